"""The browser door charges its time to first token, and the day's rollup counts it."""

from __future__ import annotations

import pytest

from conversations import runner
from conversations.models import Conversation
from tests.conversations.conftest import MODEL, connection, conversation, mock, sockets, upstream
from tests.mock_upstream import MockUpstream
from usage.models import DailyUsage, Generation

__all__ = ["connection", "conversation", "mock", "sockets", "upstream"]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]


async def test_a_chat_reply_records_its_time_to_first_token(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(ttft=0.3, tokens=3)
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Hello", model=MODEL)
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    # The reply, then the conversation's title (a generation of its own, not streamed).
    reply, title = [row async for row in Generation.objects.order_by("started_at")]
    assert reply.door == "web" and reply.status == "ok"
    assert 300 <= reply.ttft_ms <= reply.duration_ms
    assert title.ttft_ms is None
    rollup = await DailyUsage.objects.aget()
    assert (rollup.door, rollup.requests, rollup.ok) == ("web", 2, 2)
    assert (rollup.ttft_count, rollup.ttft_ms) == (1, reply.ttft_ms)
