"""The chat websocket against the mock upstream: send, stream, stop, resume, refuse."""

from __future__ import annotations

import pytest

from conversations.models import Conversation, Message
from tests.conversations.conftest import MODEL, reply_of
from tests.mock_upstream import MockUpstream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio(loop_scope="session")]


async def test_a_sent_message_streams_a_reply_that_is_saved(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=20, delay=0.005)
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Hello there", model=MODEL)
    final = await socket.receive_until(r"status-complete")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == " ".join(f"tok{i}" for i in range(20))
    assert reply.completion_tokens == 20
    assert "tok19" in final
    assert "tokens/s" in final
    # The first frame carried the user's message and the empty streaming reply.
    assert "Hello there" in socket.frames[0]
    assert "status-streaming" in socket.frames[0]
