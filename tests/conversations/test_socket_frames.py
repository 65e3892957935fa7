"""Frames the chat socket cannot use: a clear error under the composer, never a crash.

In process (WebsocketCommunicator) for what the consumer answers, and on a real Daphne for
what reaches the browser: the close codes on the wire and a log without tracebacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from accounts.models import User
from conversations.models import Conversation
from conversations.socket_frames import BROKEN_CHARACTER, NOT_TEXT, UNREADABLE
from tests import live
from tests.conversations.conftest import MODEL
from tests.faults.harness import chat_socket, session_for, tracebacks
from tests.mock_upstream import MockUpstream

DEEP = "[" * 100_000 + "]" * 100_000
LONE_SURROGATE = json.dumps({"action": "send", "content": "half an emoji \ud83d", "model": MODEL})


async def connected(sockets, conversation: Conversation):  # type: ignore[no-untyped-def]
    socket = await sockets(conversation.pk)
    ok, _ = await socket.connect()
    assert ok
    return socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
class TestInProcess:
    @pytest.mark.parametrize(
        ("frame", "error"),
        [
            pytest.param({"text": DEEP}, UNREADABLE, id="json-nested-100000-deep"),
            pytest.param({"text": "{not json"}, UNREADABLE, id="not-json"),
            pytest.param({"text": ""}, UNREADABLE, id="empty-text"),
            pytest.param({"bytes": b"\x00\x01binary"}, NOT_TEXT, id="binary"),
        ],
    )
    async def test_an_unreadable_frame_gets_an_error_and_the_socket_still_chats(
        self, sockets, conversation: Conversation, mock: MockUpstream, frame: dict, error: str
    ) -> None:
        mock.script(tokens=2)
        socket = await connected(sockets, conversation)
        await socket.communicator.send_input({"type": "websocket.receive", **frame})
        shown = await socket.receive_until(r"composer-error")
        assert error in shown
        await socket.send(action="send", content="Still here?", model=MODEL)
        assert "tok1" in await socket.receive_until(r"status-complete")

    async def test_a_lone_surrogate_is_refused_with_the_text_put_back_readable(
        self, sockets, conversation: Conversation, mock: MockUpstream
    ) -> None:
        """ "\\ud83d" is valid JSON but has no UTF-8: saving or sending it would fail."""
        mock.script(tokens=2)
        socket = await connected(sockets, conversation)
        await socket.communicator.send_to(text_data=LONE_SURROGATE)
        shown = await socket.receive_until(r"composer-error")
        assert BROKEN_CHARACTER.split(" (")[0] in shown
        assert "half an emoji \ufffd</textarea>" in shown  # back in the box, readable
        shown.encode("utf-8")  # the frame itself can be sent
        assert not await conversation.messages.aexists()
        await socket.send(action="send", content="Fixed 😀", model=MODEL)
        await socket.receive_until(r"status-complete")
        assert await conversation.messages.filter(content="Fixed 😀").aexists()

    async def test_a_lone_surrogate_in_another_field_is_refused_too(
        self, sockets, conversation: Conversation
    ) -> None:
        socket = await connected(sockets, conversation)
        await socket.send(action="send", content="hi", model="llama\ud800")
        shown = await socket.receive_until(r"composer-error")
        assert "broken character" in shown
        assert not await conversation.messages.aexists()

    async def test_an_unreadable_frame_of_a_session_that_ended_is_refused(
        self, sockets, conversation: Conversation
    ) -> None:
        socket = await connected(sockets, conversation)
        await User.objects.filter(pk=conversation.owner_id).aupdate(is_active=False)
        await socket.communicator.send_to(text_data=DEEP)
        output = await socket.communicator.receive_output(timeout=2)
        assert output == {"type": "websocket.close", "code": 4403}


@pytest.fixture(scope="module")
def worker(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[object]:
    """A Daphne of this module's own (its log is read), on the suite's Redis."""
    with django_db_blocker.unblock(), live.daphne_worker() as running:
        yield running


@pytest.mark.django_db(transaction=True)
def test_on_the_wire_bad_frames_get_error_frames_not_1011_and_no_traceback(
    worker: live.Worker, conversation: Conversation, member: User, mock: MockUpstream
) -> None:
    mock.script(tokens=2)
    with chat_socket(worker, conversation.pk, session_for(member)) as page:
        page.socket.send(DEEP)
        assert UNREADABLE in page.wait_for("composer-error")
        page.socket.send(LONE_SURROGATE)
        assert "broken character" in page.wait_for("composer-error")
        page.socket.send(b"\x00\x01binary")
        assert NOT_TEXT in page.wait_for("composer-error")
        page.send(action="send", content="Still here?", model=MODEL)
        assert "tok1" in page.wait_for("status-complete")
        page.wait_for('id="conv-title"')  # the worker is done with this turn
    assert tracebacks(worker) == []


@pytest.mark.django_db(transaction=True)
def test_a_text_frame_that_is_not_utf8_is_dropped_by_the_server_itself(
    worker: live.Worker, conversation: Conversation, member: User, mock: MockUpstream
) -> None:
    """Daphne (autobahn) checks UTF-8 before the consumer sees a frame: it drops the
    connection without a close frame (the browser reports 1006 and htmx reconnects)."""
    session = session_for(member)
    with chat_socket(worker, conversation.pk, session) as page:
        page.socket.send(b'{"action": "send", "content": "\xff"}', text=True)
        assert page.close_code() == 1006
    mock.script(tokens=2)
    with chat_socket(worker, conversation.pk, session) as page:
        page.send(action="send", content="Still here?", model=MODEL)
        assert "tok1" in page.wait_for("status-complete")
        page.wait_for('id="conv-title"')  # the worker is done with this turn
    assert tracebacks(worker) == []
