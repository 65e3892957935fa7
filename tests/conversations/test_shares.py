"""Sharing by link, with the Django test client: the dialog, the shared page and what it
shows or hides, expiry, revocation, ownership, forks, the Shared links page, the console."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, User
from audit.models import Entry
from conversations.models import Conversation, Message, Share
from conversations.share_forms import end_of
from tests.conftest import make_user
from tests.conversations.conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_IN_LINK = re.compile(r"/s/([A-Za-z0-9_-]+)/")


def chat(
    owner: User,
    title: str = "Trip plans",
    texts: tuple[str, ...] = ("Where should we go?", "**Lisbon**, in May."),
    system_prompt: str = "",
) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner,
        title=title,
        model=MODEL,
        system_prompt=system_prompt,
        last_message_at=timezone.now(),
    )
    for i, text in enumerate(texts):
        add_message(conversation, text, role="user" if i % 2 == 0 else "assistant")
    return conversation


def add_message(conversation: Conversation, text: str, role: str = "user") -> Message:
    from conversations.markdown import render_markdown

    html = render_markdown(text) if role == "assistant" else ""
    return Message.objects.create(conversation=conversation, role=role, content=text, html=html)


def share(client: Client, conversation: Conversation, **fields: str) -> str:
    """Create a link through the dialog (a plain form post); its token."""
    data = {"visibility": "team", "mode": "snapshot", "expires": "never", **fields}
    response = client.post(f"/c/{conversation.pk}/share", data)
    assert response.status_code == 200, response.content.decode()[:2000]
    return TOKEN_IN_LINK.search(response.content.decode()).group(1)


def share_of(token: str) -> Share:
    return Share.objects.get(digest=hashlib.sha256(token.encode()).hexdigest())


@pytest.fixture
def other(db: None) -> User:
    return make_user("otto")


@pytest.fixture
def other_client(other: User) -> Client:
    client = Client()
    client.force_login(other)
    return client


# -- the dialog -----------------------------------------------------------------------


def test_the_dialog_is_a_plain_page_without_javascript_and_an_htmx_dialog_with_it(
    member_client: Client, member: User
) -> None:
    conversation = chat(member)
    page = member_client.get(f"/c/{conversation.pk}/share").content.decode()
    assert "<html" in page and f'action="/c/{conversation.pk}/share"' in page
    for value in ("team", "anyone", "snapshot", "live", "never", "1h", "1d", "7d", "30d", "date"):
        assert f'value="{value}"' in page
    assert 'name="include_system_prompt"' in page

    partial = member_client.get(f"/c/{conversation.pk}/share", headers={"HX-Request": "true"})
    assert partial.content.decode().startswith('<dialog id="share-dialog"')
    created = member_client.post(
        f"/c/{conversation.pk}/share",
        {"visibility": "anyone", "mode": "live", "expires": "7d"},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert created.startswith('<dialog id="share-dialog"')
    link = re.search(r'id="share-link" value="([^"]+)"', created).group(1)
    assert link.startswith("http://testserver/s/") and 'data-copy="#share-link"' in created
    created_share = share_of(TOKEN_IN_LINK.search(link).group(1))
    assert (created_share.visibility, created_share.mode) == ("anyone", "live")


def test_the_chat_page_has_a_share_button_that_opens_the_dialog(
    member_client: Client, member: User
) -> None:
    conversation = chat(member)
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'hx-get="/c/{conversation.pk}/share" hx-target="#share-slot"' in page
    assert f'href="/c/{conversation.pk}/share"' in page  # without JavaScript: the page


def test_someone_elses_conversation_cannot_be_shared(other_client: Client, member: User) -> None:
    conversation = chat(member)
    assert other_client.get(f"/c/{conversation.pk}/share").status_code == 404
    response = other_client.post(
        f"/c/{conversation.pk}/share", {"visibility": "team", "mode": "live", "expires": "never"}
    )
    assert response.status_code == 404
    assert not Share.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"visibility": "world"},
        {"mode": "forever"},
        {"expires": "2y"},
        {"expires": "date"},
        {"expires": "date", "expires_on": "yesterday"},
        {"expires": "date", "expires_on": "2001-01-01"},
    ],
)
def test_bad_choices_are_refused_with_a_400_and_no_link(
    member_client: Client, member: User, fields: dict[str, str]
) -> None:
    conversation = chat(member)
    data = {"visibility": "team", "mode": "snapshot", "expires": "never", **fields}
    response = member_client.post(f"/c/{conversation.pk}/share", data)
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert not Share.objects.exists()


def test_a_link_carries_256_random_bits_and_only_a_digest_and_a_sealed_copy_are_stored(
    member_client: Client, member: User
) -> None:
    conversation = chat(member)
    first, second = share(member_client, conversation), share(member_client, conversation)
    assert first != second
    assert len(base64.urlsafe_b64decode(first + "=")) == 32
    stored = share_of(first)
    assert stored.digest == hashlib.sha256(first.encode()).hexdigest()
    row = Share.objects.filter(pk=stored.pk).values().get()
    assert not any(first in str(value) for value in row.values())


# -- who may open a link --------------------------------------------------------------


def test_a_team_link_opens_for_signed_in_members_and_sends_others_to_sign_in(
    member_client: Client, other_client: Client, member: User, client: Client
) -> None:
    token = share(member_client, chat(member))
    assert other_client.get(f"/s/{token}/").status_code == 200
    response = client.get(f"/s/{token}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/s/")


def test_an_anyone_link_opens_without_an_account_and_unfurls_but_a_team_link_does_not(
    member_client: Client, member: User, client: Client
) -> None:
    conversation = chat(member)
    anyone = share(member_client, conversation, visibility="anyone")
    team = share(member_client, conversation)
    page = client.get(f"/s/{anyone}/").content.decode()
    assert '<meta property="og:title" content="Trip plans">' in page
    assert '<meta property="og:description" content="Where should we go?">' in page
    team_page = member_client.get(f"/s/{team}/").content.decode()
    assert "og:" not in team_page and 'name="description"' not in team_page


def test_the_shared_page_is_never_indexed_cached_or_given_away_by_the_referrer(
    member_client: Client, member: User, client: Client
) -> None:
    token = share(member_client, chat(member), visibility="anyone")
    response = client.get(f"/s/{token}/")
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert '<meta name="robots" content="noindex, nofollow">' in response.content.decode()


def test_the_page_shows_the_title_who_shared_it_and_when(
    member_client: Client, member: User
) -> None:
    token = share(member_client, chat(member))
    page = member_client.get(f"/s/{token}/").content.decode()
    stored = share_of(token)
    assert '<h1 id="conv-title" class="conv-heading">Trip plans</h1>' in page
    assert "Shared by <strong>mia</strong>" in page
    assert stored.created_at.strftime("%Y-%m-%d %H:%M") in page
    assert "<strong>Lisbon</strong>" in page  # the reply, rendered as markdown


@pytest.mark.parametrize(
    "token",
    [
        secrets.token_urlsafe(32),  # guessed
        "SHORT",
        "a" * 43,
        "a" * 44,
        "x%2F..%2F",
    ],
)
def test_a_guessed_or_malformed_token_answers_404(
    member_client: Client, member: User, client: Client, token: str
) -> None:
    share(member_client, chat(member), visibility="anyone")
    assert client.get(f"/s/{token}/").status_code == 404
    assert client.post(f"/s/{token}/fork").status_code in (302, 404)
    assert member_client.post(f"/s/{token}/fork").status_code == 404


def test_a_shortened_or_lengthened_real_token_answers_404(
    member_client: Client, member: User, client: Client
) -> None:
    token = share(member_client, chat(member), visibility="anyone")
    assert client.get(f"/s/{token}/").status_code == 200
    for wrong in (
        token[:-1],
        token[1:],
        token + "A",
        token[:-1] + ("A" if token[-1] != "A" else "B"),
    ):
        assert client.get(f"/s/{wrong}/").status_code == 404


def test_with_anyone_links_switched_off_they_answer_404_and_cannot_be_made(
    member_client: Client, member: User, client: Client, settings: object
) -> None:
    conversation = chat(member)
    anyone = share(member_client, conversation, visibility="anyone")
    team = share(member_client, conversation)
    settings.SHARE_ANYONE = False  # type: ignore[attr-defined]
    assert client.get(f"/s/{anyone}/").status_code == 404
    assert member_client.get(f"/s/{anyone}/").status_code == 404
    assert member_client.get(f"/s/{team}/").status_code == 200
    dialog = member_client.get(f"/c/{conversation.pk}/share").content.decode()
    assert 'value="anyone"' not in dialog and 'value="team"' in dialog
    response = member_client.post(
        f"/c/{conversation.pk}/share",
        {"visibility": "anyone", "mode": "live", "expires": "never"},
    )
    assert response.status_code == 400
    assert Share.objects.count() == 2


def test_a_link_of_an_owner_who_lost_access_answers_404(
    member_client: Client, member: User, other_client: Client
) -> None:
    token = share(member_client, chat(member))
    member.deactivate()
    assert other_client.get(f"/s/{token}/").status_code == 404


# -- what a link shows ----------------------------------------------------------------


def test_a_snapshot_shows_the_chat_as_it_was_until_it_is_updated(
    member_client: Client, member: User
) -> None:
    conversation = chat(member)
    token = share(member_client, conversation)
    add_message(conversation, "Added after the snapshot")
    conversation.title = "Renamed later"
    conversation.save()
    page = member_client.get(f"/s/{token}/").content.decode()
    assert "Where should we go?" in page
    assert "Added after the snapshot" not in page and "Renamed later" not in page
    assert "ws-connect" not in page  # a snapshot has no live socket

    stored = share_of(token)
    assert member_client.post(f"/shares/{stored.pk}/update").status_code == 302
    page = member_client.get(f"/s/{token}/").content.decode()
    assert "Added after the snapshot" in page and "Renamed later" in page


def test_a_snapshot_leaves_out_a_reply_still_being_written(
    member_client: Client, member: User
) -> None:
    conversation = chat(member)
    reply = add_message(conversation, "half a rep", role="assistant")
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
    page = member_client.get(f"/s/{share(member_client, conversation)}/").content.decode()
    assert "half a rep" not in page and "Lisbon" in page


def test_a_live_link_shows_new_messages_and_follows_the_conversation(
    member_client: Client, member: User, client: Client
) -> None:
    conversation = chat(member)
    token = share(member_client, conversation, visibility="anyone", mode="live")
    add_message(conversation, "Added later")
    page = client.get(f"/s/{token}/").content.decode()
    assert "Added later" in page
    assert f'ws-connect="/ws/s/{token}/"' in page
    assert "hx-ws" in page  # the websocket extension is loaded
    assert member_client.post(f"/shares/{share_of(token).pk}/update").status_code == 400


def test_the_page_shows_nothing_but_its_messages(
    member_client: Client, member: User, client: Client
) -> None:
    conversation = chat(member, system_prompt="SYSTEM-PROMPT-SECRET")
    chat(member, title="Other chat", texts=("OTHER-CONVERSATION-TEXT",))
    _, key = ApiKey.issue(member, "laptop")
    for mode in ("snapshot", "live"):
        token = share(member_client, conversation, visibility="anyone", mode=mode)
        page = client.get(f"/s/{token}/").content.decode()
        assert "Lisbon" in page
        for leak in ("SYSTEM-PROMPT-SECRET", "OTHER-CONVERSATION-TEXT", "Other chat", key, "cs-"):
            assert leak not in page, (mode, leak)
        for part in ('id="sidebar"', 'id="conv-items"', 'id="composer"', "model-picker"):
            assert part not in page, (mode, part)


def test_the_system_prompt_is_shown_only_when_the_owner_includes_it(
    member_client: Client, member: User, other_client: Client
) -> None:
    conversation = chat(member, system_prompt="Answer like a travel agent.")
    for mode in ("snapshot", "live"):
        without = share(member_client, conversation, mode=mode)
        with_prompt = share(member_client, conversation, mode=mode, include_system_prompt="on")
        assert "travel agent" not in other_client.get(f"/s/{without}/").content.decode()
        page = other_client.get(f"/s/{with_prompt}/").content.decode()
        assert "System prompt" in page and "Answer like a travel agent." in page


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("mode", ["snapshot", "live"])
def test_script_in_the_title_messages_and_system_prompt_renders_inert(
    member_client: Client, member: User, client: Client, mode: str
) -> None:
    conversation = chat(member, title=XSS, texts=(XSS, f"Reply {XSS}"), system_prompt=XSS)
    token = share(
        member_client, conversation, visibility="anyone", mode=mode, include_system_prompt="on"
    )
    page = client.get(f"/s/{token}/").content.decode()
    assert "<script>alert" not in page
    assert "<img" not in page
    # The title (page, heading, Open Graph), the user's message and the system prompt.
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img") >= 5
    assert 'Reply &lt;script&gt;alert("x")&lt;/script&gt;&lt;img src=x' in page  # the reply
    assert '<meta property="og:title" content="&lt;script&gt;' in page


# -- expiry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "delta"),
    [
        ("never", None),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("7d", timedelta(days=7)),
        ("30d", timedelta(days=30)),
    ],
)
def test_each_expiry_choice_sets_when_the_link_stops_opening(
    member_client: Client, member: User, choice: str, delta: timedelta | None
) -> None:
    before = timezone.now()
    stored = share_of(share(member_client, chat(member), expires=choice))
    if delta is None:
        assert stored.expires_at is None
    else:
        assert before + delta <= stored.expires_at <= timezone.now() + delta


def test_a_date_expiry_lasts_to_the_end_of_that_day(member_client: Client, member: User) -> None:
    day = timezone.localdate() + timedelta(days=3)
    stored = share_of(
        share(member_client, chat(member), expires="date", expires_on=day.isoformat())
    )
    assert stored.expires_at == end_of(day)
    today = timezone.localdate()
    assert share_of(
        share(member_client, chat(member), expires="date", expires_on=today.isoformat())
    ).expires_at == end_of(today)


def test_an_expired_link_answers_404_at_once(
    member_client: Client, member: User, other_client: Client
) -> None:
    token = share(member_client, chat(member), expires="1h")
    assert other_client.get(f"/s/{token}/").status_code == 200
    Share.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert other_client.get(f"/s/{token}/").status_code == 404
    assert other_client.post(f"/s/{token}/fork").status_code == 404


def test_the_expiry_can_be_changed_and_a_bad_one_is_a_400(
    member_client: Client, member: User, other_client: Client
) -> None:
    token = share(member_client, chat(member), expires="1h")
    stored = share_of(token)
    Share.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = member_client.post(f"/shares/{stored.pk}/expiry", {"expires": "30d"})
    assert response.status_code == 302
    assert other_client.get(f"/s/{token}/").status_code == 200  # opens again
    response = member_client.post(
        f"/shares/{stored.pk}/expiry", {"expires": "date", "expires_on": "1999-01-01"}
    )
    assert (
        response.status_code == 400 and "Choose today or a later date." in response.content.decode()
    )
    assert member_client.post(f"/shares/{stored.pk}/expiry", {"expires": "x"}).status_code == 400
    assert (
        member_client.post(f"/shares/{stored.pk}/expiry", {"expires": "never"}).status_code == 302
    )
    stored.refresh_from_db()
    assert stored.expires_at is None


# -- revocation and ownership ---------------------------------------------------------


def test_revoking_asks_first_then_the_link_answers_404_at_once_and_both_are_audited(
    member_client: Client, member: User, other_client: Client
) -> None:
    token = share(member_client, chat(member), visibility="anyone", mode="live")
    stored = share_of(token)
    assert other_client.get(f"/s/{token}/").status_code == 200
    confirm = member_client.get(f"/shares/{stored.pk}/revoke")
    assert confirm.status_code == 200 and "Revoke this link?" in confirm.content.decode()
    assert other_client.get(f"/s/{token}/").status_code == 200  # asking revokes nothing
    assert member_client.post(f"/shares/{stored.pk}/revoke").status_code == 302
    assert other_client.get(f"/s/{token}/").status_code == 404
    assert member_client.post(f"/shares/{stored.pk}/revoke").status_code == 302  # again: no-op
    created, revoked = Entry.objects.order_by("when", "pk")
    assert (created.action, created.actor, created.target_id) == (
        "share.created",
        member,
        str(stored.pk),
    )
    assert created.after["visibility"] == "anyone" and created.after["mode"] == "live"
    assert (revoked.action, revoked.actor) == ("share.revoked", member)
    assert token not in str(created.after) + created.target_label


def test_only_the_owner_or_an_admin_may_update_change_or_revoke_a_link(
    member_client: Client, member: User, other_client: Client, admin_client: Client, client: Client
) -> None:
    token = share(member_client, chat(member))
    stored = share_of(token)
    for path in ("update", "expiry", "revoke"):
        assert (
            other_client.post(f"/shares/{stored.pk}/{path}", {"expires": "1d"}).status_code == 404
        )
        assert other_client.post(f"/shares/{stored.pk + 1}/{path}").status_code == 404
    assert other_client.get(f"/shares/{stored.pk}/revoke").status_code == 404
    assert other_client.get(f"/shares/{stored.pk}/expiry").status_code == 404
    assert client.post(f"/shares/{stored.pk}/revoke").status_code == 302  # to sign in
    stored.refresh_from_db()
    assert stored.revoked_at is None and stored.expires_at is None
    assert admin_client.post(f"/shares/{stored.pk}/revoke").status_code == 302
    stored.refresh_from_db()
    assert stored.revoked_at is not None
    assert other_client.get(f"/s/{token}/").status_code == 404


def test_deleting_a_conversation_revokes_its_links(
    member_client: Client, member: User, other_client: Client
) -> None:
    conversation = chat(member)
    token = share(member_client, conversation)
    assert member_client.post(f"/c/{conversation.pk}/delete").status_code == 302
    assert other_client.get(f"/s/{token}/").status_code == 404
    stored = share_of(token)
    assert stored.revoked_at is not None and stored.conversation is None
    entry = Entry.objects.get(action="share.revoked")
    assert entry.after["reason"] == "conversation deleted"
    listing = member_client.get("/shares/").content.decode()
    assert "Trip plans</td>" not in listing and "(deleted)" in listing and "revoked" in listing


def test_deleting_an_account_takes_its_links_with_it(
    member_client: Client, member: User, other_client: Client
) -> None:
    token = share(member_client, chat(member))
    member.delete()
    assert not Share.objects.exists()
    assert other_client.get(f"/s/{token}/").status_code == 404


# -- continuing in one's own account --------------------------------------------------


def test_a_signed_in_viewer_continues_the_chat_in_their_own_account(
    member_client: Client, member: User, other: User, other_client: Client
) -> None:
    conversation = chat(member, system_prompt="Be brief.")
    token = share(member_client, conversation, mode="live")
    page = other_client.get(f"/s/{token}/").content.decode()
    assert "Continue in my account" in page
    response = other_client.post(f"/s/{token}/fork")
    fork = Conversation.objects.get(owner=other)
    assert response["Location"] == f"/c/{fork.pk}/"
    assert fork.title == "Trip plans" and fork.system_prompt == "" and fork.model == MODEL
    copied = list(fork.messages.values_list("role", "content"))
    assert copied == list(conversation.messages.values_list("role", "content"))
    assert other_client.get(f"/c/{fork.pk}/").status_code == 200
    assert conversation.messages.count() == 2  # the original is untouched

    with_prompt = share(member_client, conversation, include_system_prompt="on")
    other_client.post(f"/s/{with_prompt}/fork")
    assert Conversation.objects.filter(owner=other).latest("pk").system_prompt == "Be brief."


def test_a_snapshot_fork_copies_the_snapshot_not_what_came_after(
    member_client: Client, member: User, other: User, other_client: Client
) -> None:
    conversation = chat(member)
    token = share(member_client, conversation)
    add_message(conversation, "After the snapshot")
    other_client.post(f"/s/{token}/fork")
    fork = Conversation.objects.get(owner=other)
    assert "After the snapshot" not in fork.messages.values_list("content", flat=True)
    assert fork.messages.count() == 2


def test_forking_needs_a_signed_in_account_and_a_post(
    member_client: Client, member: User, client: Client, other_client: Client
) -> None:
    token = share(member_client, chat(member), visibility="anyone")
    page = client.get(f"/s/{token}/").content.decode()
    assert "Continue in my account" not in page and "Sign in to continue" in page
    response = client.post(f"/s/{token}/fork")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert other_client.get(f"/s/{token}/fork").status_code == 405
    assert Conversation.objects.count() == 1


# -- the Shared links page and the console ------------------------------------------


def test_the_shared_links_page_lists_views_links_and_hides_what_no_longer_opens(
    member_client: Client, member: User, other_client: Client
) -> None:
    conversation = chat(member)
    kept = share(member_client, conversation, visibility="anyone", mode="live")
    revoked = share_of(share(member_client, conversation))
    expired = share_of(share(member_client, conversation, expires="1h"))
    other_client.get(f"/s/{kept}/")
    other_client.get(f"/s/{kept}/")
    member_client.post(f"/shares/{revoked.pk}/revoke")
    Share.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    page = member_client.get("/shares/").content.decode()
    kept_share = share_of(kept)
    assert kept_share.views == 2 and kept_share.last_viewed_at is not None
    assert page.count('<tr id="share-') == 3
    assert f'value="http://testserver/s/{kept}/" readonly' in page
    assert f'data-copy="#link-{kept_share.pk}"' in page
    assert "<td>2</td>" in page and "expired" in page and "revoked" in page
    active = member_client.get("/shares/?show=active").content.decode()
    assert active.count('<tr id="share-') == 1 and f'id="share-{kept_share.pk}"' in active
    assert member_client.get("/shares/?show=bogus").status_code == 400
    theirs = other_client.get("/shares/").content.decode()
    assert '<tr id="share-' not in theirs and "No links" in theirs


def test_admins_see_and_revoke_every_link_from_the_console(
    member_client: Client, member: User, admin: User, admin_client: Client, other_client: Client
) -> None:
    token = share(member_client, chat(member))
    stored = share_of(token)
    page = admin_client.get("/staff/shares/").content.decode()
    assert f'id="share-{stored.pk}"' in page and "mia" in page
    assert token not in page
    assert other_client.get("/staff/shares/").status_code == 403
    assert other_client.post(f"/staff/shares/{stored.pk}/revoke/").status_code == 403
    assert admin_client.get(f"/staff/shares/{stored.pk}/revoke/").status_code == 200
    assert admin_client.post(f"/staff/shares/{stored.pk}/revoke/").status_code == 302
    assert other_client.get(f"/s/{token}/").status_code == 404
    assert Entry.objects.get(action="share.revoked").actor == admin
    assert f'id="share-{stored.pk}"' not in admin_client.get("/staff/shares/").content.decode()
    assert f'id="share-{stored.pk}"' in admin_client.get("/staff/shares/?show=all").content.decode()
    assert admin_client.get("/staff/shares/?show=x").status_code == 400
