"""What the end of a reply saves and charges: the upstream's counts, else estimates."""

from __future__ import annotations

import pytest

from conversations import runner
from conversations.models import Conversation, Message
from llm.tokens import estimate_prompt_tokens, estimate_tokens
from tests.conversations.conftest import MODEL, reply_of
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]


async def test_a_reply_stopped_before_the_upstream_counted_is_saved_and_charged_estimated(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=2000, delay=0.01)
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Count to two thousand", model=MODEL)
    await socket.receive_until(r"tok5\b")
    await socket.send(action="stop")
    await socket.receive_until(r"status-stopped")
    await runner.wait_for_runners()
    reply = await reply_of(conversation)
    (chat,) = [request for request in mock.requests if request.path == "/api/chat"]
    prompt = estimate_prompt_tokens(chat.body["messages"])
    completion = estimate_tokens(reply.content)
    assert reply.status == Message.Status.STOPPED and completion > 1
    assert (reply.prompt_tokens, reply.completion_tokens, reply.usage_source) == (
        prompt,
        completion,
        "estimated",
    )
    assert reply.eval_duration_ns and reply.eval_duration_ns > 0  # timed from the first token
    generation = await Generation.objects.aget()
    assert (
        generation.prompt_tokens,
        generation.completion_tokens,
        generation.usage_source,
        generation.status,
    ) == (prompt, completion, "estimated", "stopped")


async def test_a_reply_that_failed_before_any_text_counts_nothing(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(status=500, error="out of memory")
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Hello", model=MODEL)
    await socket.receive_until(r"status-error")
    await runner.wait_for_runners()
    reply = await reply_of(conversation)
    assert (
        reply.prompt_tokens,
        reply.completion_tokens,
        reply.usage_source,
        reply.eval_duration_ns,
    ) == (None, None, "", None)
    generation = await Generation.objects.aget()
    assert (
        generation.prompt_tokens,
        generation.completion_tokens,
        generation.usage_source,
        generation.status,
    ) == (0, 0, "estimated", "error")
