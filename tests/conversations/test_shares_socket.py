"""A live share's read-only socket against the mock upstream: viewers get the owner's
frames, resume mid-reply, cannot act, and are closed when the link stops opening."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from html import unescape

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts.models import User
from chatsite.asgi import application
from conversations import runner, shares
from conversations.consumers import FORBIDDEN
from conversations.models import Conversation, Message, Share
from conversations.share_consumer import GONE, without_sidebar
from tests.conftest import make_user
from tests.conversations.conftest import MODEL, Socket, reply_of, session_cookie
from tests.mock_upstream import MockUpstream

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]

PARAGRAPHS = "".join(f"para{i}\n\n" for i in range(60)).strip()
GONE_TEXT = "This link is no longer available"
READ_ONLY = "read-only view"


class Viewer(Socket):
    """A live share's socket, as the shared page opens it (a session cookie or none)."""

    def __init__(self, token: str, cookie: str = "") -> None:
        headers = [(b"host", b"localhost"), (b"origin", b"http://localhost")]
        if cookie:
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        self.communicator = WebsocketCommunicator(application, f"/ws/s/{token}/", headers=headers)
        self.frames: list[str] = []

    async def closed_with(self, within: float = 3) -> int:
        """Frames until the server closes; the close code."""
        while True:
            output = await self.communicator.receive_output(timeout=within)
            if output["type"] == "websocket.close":
                return output.get("code", 1000)
            self.frames.append(output.get("text", ""))


@pytest.fixture
async def viewers() -> object:
    opened: list[Viewer] = []

    async def open_viewer(token: str, cookie: str = "") -> Viewer:
        viewer = Viewer(token, cookie)
        opened.append(viewer)
        connected, _ = await viewer.connect()
        assert connected
        return viewer

    yield open_viewer
    for viewer in opened:
        try:
            await viewer.close()
        except Exception:
            pass
    await runner.wait_for_runners()


@database_sync_to_async
def shared(conversation: Conversation, **options: object) -> str:
    """A share of `conversation` (anyone, live, never expiring unless told); its token."""
    fields = {
        "visibility": Share.Visibility.ANYONE,
        "mode": Share.Mode.LIVE,
        "expires_at": None,
        "include_system_prompt": False,
        **options,
    }
    return shares.create(None, conversation, **fields)[1]  # type: ignore[arg-type]


@database_sync_to_async
def with_an_exchange(conversation: Conversation) -> Conversation:
    """Not a draft: a first exchange, so that no title request follows the next reply."""
    Message.objects.create(conversation=conversation, role="user", content="Earlier question")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="Earlier answer",
        html="<p>Earlier answer</p>",
    )
    conversation.last_message_at = timezone.now()
    conversation.save()
    return conversation


async def owner_socket(sockets, conversation: Conversation) -> Socket:  # type: ignore[no-untyped-def]
    socket = await sockets(conversation.pk)
    connected, _ = await socket.connect()
    assert connected
    return socket


async def test_live_viewers_get_the_owners_frames_byte_for_byte(
    sockets, viewers, conversation: Conversation, mock: MockUpstream
) -> None:
    """Rendered once by the runner, the same frames reach the owner's tab and each viewer."""
    await with_an_exchange(conversation)
    token = await shared(conversation)
    mock.script(text=PARAGRAPHS, delay=0.005)
    owner = await owner_socket(sockets, conversation)
    watching = [await viewers(token) for _ in range(3)]
    for socket in [owner, *watching]:
        assert "Earlier answer" in await socket.receive()  # the latest turn, on connect
    await owner.send(action="send", content="Paragraphs please", model=MODEL)
    for socket in [owner, *watching]:
        await socket.receive_until(r"status-complete")
    assert len(owner.frames) > 5
    assert "conv-items" in owner.frames[1]  # the turn's first frame: the sidebar entry too
    for viewer in watching:
        # The same frames, but for the owner's sidebar entry, which a shared page lacks.
        assert viewer.frames[2:] == owner.frames[2:]
        assert viewer.frames[1] == without_sidebar(owner.frames[1])
        assert (
            "conv-items" not in "".join(viewer.frames) and "Paragraphs please" in viewer.frames[1]
        )
    assert await owner.communicator.receive_nothing(timeout=0.3)


async def test_a_viewer_joining_mid_reply_gets_the_text_so_far_then_the_rest_with_no_gap(
    sockets, viewers, conversation: Conversation, mock: MockUpstream
) -> None:
    token = await shared(conversation)
    mock.script(text=PARAGRAPHS, delay=0.01)
    owner = await owner_socket(sockets, conversation)
    await owner.send(action="send", content="Paragraphs", model=MODEL)
    await owner.receive_until(r"para10\b")
    viewer = await viewers(token)  # as after a reload of the shared page mid-reply
    snapshot_frame = await viewer.receive()
    assert "status-streaming" in snapshot_frame and "para10" in snapshot_frame
    await viewer.receive_until(r"status-complete")

    reply = await reply_of(conversation)
    done = _inner(snapshot_frame, f"msg-{reply.pk}-done")
    tail = _inner(snapshot_frame, f"msg-{reply.pk}-tail")
    for frame in viewer.frames[1:-1]:
        done += _inner(frame, f"msg-{reply.pk}-done") if f"msg-{reply.pk}-done" in frame else ""
        tail = _inner(frame, f"msg-{reply.pk}-tail")
    shown = _words(done + tail)
    assert len(shown) > 20
    assert shown == [f"para{i}" for i in range(len(shown))]
    final_body = viewer.frames[-1].split("-body", 1)[1].split("<footer", 1)[0]
    assert _words(final_body.split(">", 1)[1]) == [f"para{i}" for i in range(60)]


async def test_every_frame_from_a_viewer_is_refused_and_nothing_happens(
    sockets, viewers, conversation: Conversation, mock: MockUpstream
) -> None:
    await with_an_exchange(conversation)
    token = await shared(conversation)
    mock.script(tokens=150, delay=0.01)
    owner = await owner_socket(sockets, conversation)
    viewer = await viewers(token)
    await viewer.receive()
    await owner.send(action="send", content="Count", model=MODEL)
    await viewer.receive_until(r"tok5\b")
    reply = await reply_of(conversation)
    attempts = [
        {"action": "stop"},
        {"action": "send", "content": "Injected", "model": MODEL},
        {"action": "regenerate", "model": MODEL},
        {"action": "edit", "message_id": reply.pk - 1, "content": "Edited", "model": MODEL},
    ]
    for attempt in attempts:
        await viewer.send(**attempt)
        await viewer.receive_until(READ_ONLY)
    await viewer.communicator.send_to(text_data="not json")
    await viewer.receive_until(READ_ONLY)
    await viewer.communicator.send_to(bytes_data=b"\x00\x01")
    await viewer.receive_until(READ_ONLY)

    await owner.receive_until(r"status-complete")
    await runner.wait_for_runners()
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content.split()[-1] == "tok149"  # not stopped
    contents = [m.content async for m in Message.objects.filter(conversation=conversation)]
    assert contents == ["Earlier question", "Earlier answer", "Count", reply.content]
    chats = [request for request in mock.requests if request.path == "/api/chat"]
    assert len(chats) == 1  # nothing regenerated or sent


async def test_revoking_closes_live_viewers_at_once_and_tells_the_page(
    viewers, conversation: Conversation
) -> None:
    await with_an_exchange(conversation)
    token = await shared(conversation)
    viewer = await viewers(token)
    await viewer.receive()
    share = await Share.objects.aget()
    began = asyncio.get_running_loop().time()
    await database_sync_to_async(shares.revoke)(None, share)
    assert await viewer.closed_with() == GONE
    assert asyncio.get_running_loop().time() - began < 1
    assert GONE_TEXT in viewer.frames[-1] and 'id="share-content"' in viewer.frames[-1]


async def test_deleting_the_conversation_closes_its_live_viewers(
    viewers, conversation: Conversation
) -> None:
    await with_an_exchange(conversation)
    token = await shared(conversation)
    viewer = await viewers(token)
    await viewer.receive()
    await database_sync_to_async(conversation.delete)()
    assert await viewer.closed_with() == GONE
    assert GONE_TEXT in viewer.frames[-1]


async def test_an_expiring_link_closes_its_viewers_when_it_expires(
    viewers, conversation: Conversation
) -> None:
    token = await shared(conversation, expires_at=timezone.now() + timedelta(seconds=1))
    viewer = await viewers(token)
    began = asyncio.get_running_loop().time()
    assert await viewer.closed_with(within=3) == GONE
    assert 0.5 < asyncio.get_running_loop().time() - began < 2
    assert GONE_TEXT in viewer.frames[-1]


async def test_a_later_expiry_keeps_the_viewers_and_an_earlier_one_closes_them(
    viewers, conversation: Conversation
) -> None:
    token = await shared(conversation, expires_at=timezone.now() + timedelta(seconds=1))
    viewer = await viewers(token)
    share = await Share.objects.aget()
    await database_sync_to_async(shares.set_expiry)(share, timezone.now() + timedelta(hours=1))
    assert await viewer.communicator.receive_nothing(timeout=1.5)
    await database_sync_to_async(shares.set_expiry)(share, timezone.now() - timedelta(seconds=1))
    assert await viewer.closed_with() == GONE


async def test_a_snapshot_or_unknown_link_gets_no_frame_of_the_conversation(
    viewers, conversation: Conversation
) -> None:
    await with_an_exchange(conversation)
    snapshot = await shared(conversation, mode=Share.Mode.SNAPSHOT)
    for token in (snapshot, "x" * 43, "short"):
        viewer = await viewers(token)
        assert await viewer.closed_with() == GONE
        assert len(viewer.frames) == 1 and "Earlier" not in viewer.frames[0]


async def test_an_anyone_link_switched_off_for_the_site_gets_nothing(
    viewers, conversation: Conversation, settings: object
) -> None:
    token = await shared(conversation)
    settings.SHARE_ANYONE = False  # type: ignore[attr-defined]
    viewer = await viewers(token)
    assert await viewer.closed_with() == GONE


async def test_a_team_link_needs_a_signed_in_viewer_who_keeps_access(
    viewers, conversation: Conversation
) -> None:
    await with_an_exchange(conversation)
    token = await shared(conversation, visibility=Share.Visibility.TEAM)
    anonymous = await viewers(token)
    assert await anonymous.closed_with() == FORBIDDEN
    assert "Earlier" not in "".join(anonymous.frames)

    other = await database_sync_to_async(make_user)("otto")
    cookie = await database_sync_to_async(session_cookie)(other)
    viewer = await viewers(token, cookie)
    assert "Earlier answer" in await viewer.receive()
    await database_sync_to_async(other.deactivate)()
    assert await viewer.closed_with() == FORBIDDEN


async def test_the_owner_losing_access_closes_the_viewers(
    viewers, member: User, conversation: Conversation
) -> None:
    token = await shared(conversation)
    viewer = await viewers(token)
    await database_sync_to_async(member.deactivate)()
    assert await viewer.closed_with() == GONE


def _words(html: str) -> list[str]:
    return unescape(re.sub(r"<[^>]+>", " ", html)).split()


def _inner(frame: str, element_id: str) -> str:
    match = re.search(
        rf'<div id="{element_id}"[^>]*>(.*?)</div>(?=\s*<div id="msg-|\s*$|\s*</div>)', frame, re.S
    )
    assert match, f"{element_id} not in frame"
    return match.group(1)
