"""Images sent over the chat socket: claimed by the message, sent in each protocol's own
form (Ollama `images`, OpenAI `image_url` data URLs), refused for a model that cannot see
images, and only the sender's own unsent images."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import User
from conversations import attachments
from conversations.models import Attachment, Conversation, Message
from llm.models import Connection
from tests.conftest import make_user
from tests.conversations.conftest import MODEL
from tests.conversations.test_attachments import image_bytes
from tests.mock_upstream import MockUpstream

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]

VISION = "llava:7b"


@pytest.fixture
def vision(mock: MockUpstream) -> Iterator[str]:
    """The mock also lists a vision model (its capabilities include "vision")."""
    mock.ollama_models.append(VISION)
    yield VISION
    mock.ollama_models.remove(VISION)


def _attach(conversation: Conversation, kind: str = "PNG") -> Attachment:
    upload = SimpleUploadedFile("x", image_bytes(kind), content_type="image/png")
    return attachments.store(conversation, upload)


attach = database_sync_to_async(_attach)


async def _turn(
    sockets: Any, conversation: Conversation, model: str, ids: object, text: str
) -> list[str]:
    """Send one message with attachment `ids`; the frames until its reply or refusal."""
    socket = await sockets(conversation.pk)
    ok, _ = await socket.connect()
    assert ok
    await socket.drain()  # the latest turn, sent on connect
    socket.frames.clear()
    await socket.send(action="send", content=text, model=model, attachments=ids)
    await socket.receive_until(r"status-complete|composer-error\"[^>]*>\w")
    frames = list(socket.frames)
    await socket.close()
    return frames


def _chat_bodies(mock: MockUpstream, text: str) -> list[dict]:
    """The chat requests the upstream got for a message `text`."""
    return [
        r.body
        for r in mock.requests
        if r.path.endswith(("/api/chat", "/chat/completions"))
        and _text_of(r.body["messages"][-1]) == text
    ]


def _text_of(message: dict) -> str:
    """A message's text (an OpenAI message's first part's), not a title request's prompt."""
    content = message.get("content")
    if isinstance(content, list):
        return content[0].get("text", "") if content else ""
    return content or ""


async def test_ollama_gets_the_images_as_base64_in_the_message(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    first, second = await attach(conversation), await attach(conversation, "JPEG")
    frames = await _turn(
        sockets, conversation, vision, [str(first.pk), str(second.pk)], "What is this?"
    )
    (body,) = _chat_bodies(mock, "What is this?")
    last = body["messages"][-1]
    assert last["content"] == "What is this?"
    expected = []
    for a in (first, second):
        with a.file.open("rb") as handle:
            expected.append(base64.b64encode(handle.read()).decode())
    assert last["images"] == expected
    message = await Message.objects.filter(conversation=conversation, role="user").aget()
    assert message.images == [str(first.pk), str(second.pk)]
    assert await Attachment.objects.filter(message=message).acount() == 2
    assert any(f'href="/images/{first.pk}"' in frame for frame in frames)


async def test_a_single_id_as_a_string_is_taken_too(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    # htmx sends one hidden input's value as a string, several as a list.
    one = await attach(conversation)
    await _turn(sockets, conversation, vision, str(one.pk), "Just one")
    (body,) = _chat_bodies(mock, "Just one")
    assert len(body["messages"][-1]["images"]) == 1


async def test_openai_gets_image_url_parts_with_data_urls(
    sockets, member: User, mock: MockUpstream
) -> None:
    await Connection.objects.acreate(name="openai", kind="openai", base_url=mock.openai_url)
    conversation = await Conversation.objects.acreate(owner=member, model="gpt-4o-mini")
    png, webp = await attach(conversation), await attach(conversation, "WEBP")
    # An OpenAI-compatible server reports no capabilities: images are allowed.
    await _turn(sockets, conversation, "gpt-4o-mini", [str(png.pk), str(webp.pk)], "Describe")
    (body,) = _chat_bodies(mock, "Describe")
    parts = body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "Describe"}
    urls = [part["image_url"]["url"] for part in parts[1:]]
    assert [part["type"] for part in parts[1:]] == ["image_url", "image_url"]
    assert urls[0].startswith("data:image/png;base64,iVBORw0KGgo")
    assert urls[1].startswith("data:image/webp;base64,UklGR")


async def test_the_images_of_earlier_messages_stay_in_the_history(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    one = await attach(conversation)
    await _turn(sockets, conversation, vision, [str(one.pk)], "First look")
    await _turn(sockets, conversation, vision, [], "And now?")
    (body,) = _chat_bodies(mock, "And now?")
    assert len(body["messages"][0]["images"]) == 1 and "images" not in body["messages"][-1]


async def test_a_model_that_cannot_see_images_gets_the_history_without_them(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    one = await attach(conversation)
    await _turn(sockets, conversation, vision, [str(one.pk)], "Seen by llava")
    await _turn(sockets, conversation, MODEL, [], "Text for llama")
    (body,) = _chat_bodies(mock, "Text for llama")
    assert body["messages"][0]["content"] == "Seen by llava"
    assert not any("images" in message for message in body["messages"])


async def test_a_model_that_cannot_see_images_is_refused_before_anything_is_sent(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    pending = await attach(conversation)
    frames = await _turn(sockets, conversation, MODEL, [str(pending.pk)], "Can you see it?")
    assert any(f"The model {MODEL} cannot see images" in frame for frame in frames)
    assert not _chat_bodies(mock, "Can you see it?")
    assert not await Message.objects.filter(conversation=conversation).aexists()
    await pending.arefresh_from_db()
    assert pending.message_id is None  # still pending, to send to another model


@pytest.mark.parametrize(
    "whose", ["another person's", "another chat's", "already sent", "unknown", "not an id"]
)
async def test_only_ones_own_unsent_images_of_this_chat_can_be_sent(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str, whose: str
) -> None:
    if whose == "another person's":
        bob = await database_sync_to_async(make_user)("bob")
        other = await Conversation.objects.acreate(owner=bob)
        image_id = str((await attach(other)).pk)
    elif whose == "another chat's":
        other = await Conversation.objects.acreate(owner_id=conversation.owner_id)
        image_id = str((await attach(other)).pk)
    elif whose == "already sent":
        used = await attach(conversation)
        await _turn(sockets, conversation, vision, [str(used.pk)], "Once")
        image_id = str(used.pk)
    elif whose == "unknown":
        image_id = "00000000-0000-4000-8000-000000000000"
    else:
        image_id = "../../etc/passwd"
    frames = await _turn(sockets, conversation, vision, [image_id], "Twice")
    assert any("no longer available: attach it again" in frame for frame in frames)
    assert not _chat_bodies(mock, "Twice")
    assert not await Message.objects.filter(conversation=conversation, content="Twice").aexists()


async def test_more_ids_than_the_limit_are_refused(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str, settings: object
) -> None:
    ids = [str((await attach(conversation)).pk) for _ in range(3)]
    settings.IMAGE_MAX_COUNT = 2  # type: ignore[attr-defined]
    frames = await _turn(sockets, conversation, vision, ids, "Three")
    assert any("at most 2 images" in frame for frame in frames)
    assert not _chat_bodies(mock, "Three")


async def test_a_live_share_viewer_gets_the_new_images_through_the_share(
    sockets, conversation: Conversation, mock: MockUpstream, vision: str
) -> None:
    from django.test import AsyncClient

    from tests.conversations.test_shares_socket import Viewer, shared

    token = await shared(conversation)
    viewer = Viewer(token, "")
    connected, _ = await viewer.communicator.connect()
    assert connected
    image = await attach(conversation)
    owner_frames = await _turn(sockets, conversation, vision, [str(image.pk)], "Look")
    seen = ""
    while "status-complete" not in seen:
        seen += await viewer.communicator.receive_from(timeout=5)
    await viewer.communicator.disconnect()
    assert any(f'href="/images/{image.pk}"' in frame for frame in owner_frames)
    assert f'href="/s/{token}/images/{image.pk}"' in seen
    assert f'"/images/{image.pk}"' not in seen
    shown = await AsyncClient().get(f"/s/{token}/images/{image.pk}")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
