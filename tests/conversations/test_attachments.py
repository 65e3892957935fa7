"""Image attachments over HTTP: upload (picked or pasted), limits, refused types, removal,
who may see an image, and their files going with the conversation."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from PIL import Image

from accounts.models import User
from conversations import shares
from conversations.models import Attachment, Conversation, Message, Share, attachment_storage
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def image_bytes(kind: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def upload(client: Client, conversation: Conversation, data: bytes, name: str = "photo.png"):  # type: ignore[no-untyped-def]
    from django.core.files.uploadedfile import SimpleUploadedFile

    file = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    return client.post(
        f"/c/{conversation.pk}/attachments", {"image": file}, headers={"HX-Request": "true"}
    )


def uploaded(client: Client, conversation: Conversation, kind: str = "PNG") -> Attachment:
    response = upload(client, conversation, image_bytes(kind))
    assert response.status_code == 200, response.content
    (found,) = re.findall(r'name="attachments" value="([0-9a-f-]{36})"', response.content.decode())
    return Attachment.objects.get(pk=found)


def sent(attachment: Attachment) -> Message:
    """Let a user message carry the attachment, as a send does."""
    message = Message.objects.create(
        conversation=attachment.conversation,
        role="user",
        content="look",
        images=[str(attachment.pk)],
    )
    Attachment.objects.filter(pk=attachment.pk).update(message=message)
    return message


@pytest.fixture
def chat(member: User) -> Conversation:
    return Conversation.objects.create(owner=member, model="llama3.2:latest")


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_an_image_is_kept_as_pending_with_the_type_its_content_shows(
    member_client: Client, chat: Conversation, kind: str, content_type: str
) -> None:
    attachment = uploaded(member_client, chat, kind)
    assert (attachment.content_type, attachment.width, attachment.height) == (content_type, 8, 6)
    assert attachment.message is None and attachment.owner_id == chat.owner_id
    assert attachment_storage().exists(attachment.file.name)
    # The file's name is random, not the one the browser sent.
    assert "photo" not in attachment.file.name
    page = member_client.get(f"/c/{chat.pk}/").content.decode()
    assert f'value="{attachment.pk}"' in page  # the tray shows it after a reload


def test_a_pasted_image_takes_the_same_path(member_client: Client, chat: Conversation) -> None:
    # The page uploads a pasted image under a made-up name, like a picked one.
    response = upload(member_client, chat, image_bytes("PNG"), name="pasted-image")
    assert response.status_code == 200
    assert Attachment.objects.get(conversation=chat).content_type == "image/png"


@pytest.mark.parametrize(
    "data",
    [
        b"just some text, not an image",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        image_bytes("BMP"),
        image_bytes("PNG")[:40],  # cut short
    ],
    ids=["text", "svg", "bmp", "truncated"],
)
def test_what_is_not_a_png_jpeg_webp_or_gif_is_refused_by_its_content(
    member_client: Client, chat: Conversation, data: bytes
) -> None:
    response = upload(member_client, chat, data, name="looks-fine.png")
    assert response.status_code == 415
    assert "PNG, JPEG, WebP or GIF" in response.content.decode()
    assert not Attachment.objects.exists()


def test_an_image_over_the_size_limit_is_refused(
    member_client: Client, chat: Conversation, settings: object
) -> None:
    data = image_bytes("PNG", (64, 64))
    settings.IMAGE_MAX_BYTES = len(data) - 1  # type: ignore[attr-defined]
    response = upload(member_client, chat, data)
    assert response.status_code == 413
    assert "larger than" in response.content.decode()
    settings.IMAGE_MAX_BYTES = len(data)  # type: ignore[attr-defined]
    assert upload(member_client, chat, data).status_code == 200


def test_more_images_than_a_message_may_carry_are_refused(
    member_client: Client, chat: Conversation, settings: object
) -> None:
    settings.IMAGE_MAX_COUNT = 2  # type: ignore[attr-defined]
    uploaded(member_client, chat)
    uploaded(member_client, chat)
    response = upload(member_client, chat, image_bytes())
    assert response.status_code == 400
    assert "at most 2 images" in response.content.decode()
    assert Attachment.objects.count() == 2


def test_an_upload_without_a_file_or_to_someone_elses_chat_is_refused(
    member_client: Client, chat: Conversation
) -> None:
    response = member_client.post(f"/c/{chat.pk}/attachments", {})
    assert response.status_code == 400 and "Choose an image" in response.content.decode()
    theirs = Conversation.objects.create(owner=make_user("bob"))
    assert upload(member_client, theirs, image_bytes()).status_code == 404
    assert member_client.get(f"/c/{chat.pk}/attachments").status_code == 405
    assert not Attachment.objects.exists()


def test_the_owner_gets_the_image_with_safe_headers(
    member_client: Client, chat: Conversation
) -> None:
    attachment = uploaded(member_client, chat, "JPEG")
    response = member_client.get(f"/images/{attachment.pk}")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == "inline"
    assert "public" not in response["Cache-Control"]
    body = b"".join(response.streaming_content)
    assert Image.open(io.BytesIO(body)).format == "JPEG"


def test_anyone_else_gets_404_for_an_image(member_client: Client, chat: Conversation) -> None:
    attachment = uploaded(member_client, chat)
    sent(attachment)
    other = Client()
    other.force_login(make_user("bob"))
    assert other.get(f"/images/{attachment.pk}").status_code == 404
    assert Client().get(f"/images/{attachment.pk}").status_code == 404
    assert member_client.get("/images/00000000-0000-4000-8000-000000000000").status_code == 404
    assert member_client.get("/images/1").status_code == 404


def test_a_pending_image_can_be_removed_by_its_owner_only(
    member_client: Client, chat: Conversation
) -> None:
    attachment = uploaded(member_client, chat)
    name = attachment.file.name
    other = Client()
    other.force_login(make_user("bob"))
    url = f"/c/{chat.pk}/attachments/{attachment.pk}/remove"
    assert other.post(url).status_code == 404
    assert member_client.post(url).status_code == 200
    assert not Attachment.objects.exists()
    assert not attachment_storage().exists(name)
    assert member_client.post(url).status_code == 404
    assert member_client.post(f"/c/{chat.pk}/attachments/nonsense/remove").status_code == 404


def test_a_sent_image_cannot_be_removed_from_its_message(
    member_client: Client, chat: Conversation
) -> None:
    attachment = uploaded(member_client, chat)
    sent(attachment)
    assert member_client.post(f"/c/{chat.pk}/attachments/{attachment.pk}/remove").status_code == 404
    assert Attachment.objects.filter(pk=attachment.pk).exists()


def test_deleting_the_conversation_deletes_its_files(
    member_client: Client, chat: Conversation
) -> None:
    first, second = uploaded(member_client, chat), uploaded(member_client, chat, "GIF")
    sent(first)
    names = [first.file.name, second.file.name]
    assert all(attachment_storage().exists(name) for name in names)
    response = member_client.post(f"/c/{chat.pk}/delete")
    assert response.status_code == 302
    assert not Attachment.objects.exists()
    assert not any(attachment_storage().exists(name) for name in names)


def test_the_message_shows_its_images_as_thumbnails_that_open_full_size(
    member_client: Client, chat: Conversation
) -> None:
    attachment = uploaded(member_client, chat)
    sent(attachment)
    Conversation.objects.filter(pk=chat.pk).update(last_message_at="2026-01-01T00:00:00Z")
    page = member_client.get(f"/c/{chat.pk}/").content.decode()
    assert f'<a class="msg-image" href="/images/{attachment.pk}"' in page
    assert f'<img src="/images/{attachment.pk}"' in page


def _share(conversation: Conversation, mode: str) -> str:
    _, token = shares.create(
        None,
        conversation,
        visibility=Share.Visibility.TEAM,
        mode=mode,
        expires_at=None,
        include_system_prompt=False,
    )
    return token


@pytest.mark.parametrize("mode", [Share.Mode.LIVE, Share.Mode.SNAPSHOT])
def test_viewers_of_a_share_see_its_images_through_the_share_only(
    member_client: Client, chat: Conversation, mode: str
) -> None:
    shown = uploaded(member_client, chat)
    sent(shown)
    still_pending = uploaded(member_client, chat)
    token = _share(chat, mode)
    viewer = Client()
    viewer.force_login(make_user("vic"))
    page = viewer.get(f"/s/{token}/").content.decode()
    assert f'href="/s/{token}/images/{shown.pk}"' in page
    response = viewer.get(f"/s/{token}/images/{shown.pk}")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert viewer.get(f"/images/{shown.pk}").status_code == 404
    assert viewer.get(f"/s/{token}/images/{still_pending.pk}").status_code == 404
    # Not an image of the shared conversation, and not a link that opens.
    elsewhere = Conversation.objects.create(owner=chat.owner)
    theirs = uploaded(member_client, elsewhere)
    sent(theirs)
    assert viewer.get(f"/s/{token}/images/{theirs.pk}").status_code == 404
    assert viewer.get(f"/s/{'x' * 43}/images/{shown.pk}").status_code == 404
    # Signed out, a team link's image is not shown either.
    assert Client().get(f"/s/{token}/images/{shown.pk}").status_code == 404


def test_a_snapshot_shows_only_the_images_it_froze(
    member_client: Client, chat: Conversation
) -> None:
    token = _share(chat, Share.Mode.SNAPSHOT)
    later = uploaded(member_client, chat)
    sent(later)
    viewer = Client()
    viewer.force_login(make_user("vic"))
    assert viewer.get(f"/s/{token}/images/{later.pk}").status_code == 404


def test_a_revoked_share_shows_no_images(member_client: Client, chat: Conversation) -> None:
    attachment = uploaded(member_client, chat)
    sent(attachment)
    token = _share(chat, Share.Mode.LIVE)
    viewer = Client()
    viewer.force_login(make_user("vic"))
    assert viewer.get(f"/s/{token}/images/{attachment.pk}").status_code == 200
    shares.revoke(None, Share.objects.get())
    assert viewer.get(f"/s/{token}/images/{attachment.pk}").status_code == 404
