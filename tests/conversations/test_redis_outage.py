"""The chat page while Redis is down, on a real Daphne with a Redis of its own that the
tests stop and start: nothing the person sends vanishes, and nothing stays "writing…"."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from accounts.models import User
from conversations.consumers import METER_UNREACHABLE
from conversations.models import Conversation, Message
from tests import live
from tests.conversations.conftest import MODEL
from tests.faults.harness import (
    RedisServer,
    chat_socket,
    daphne_on,
    redis_server,
    session_for,
    tracebacks,
)
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def worker(redis: RedisServer) -> Iterator[live.Worker]:
    """A Daphne of the test's own: no connection of its pools predates the test's outage."""
    with daphne_on(redis) as running:
        yield running


def test_a_message_sent_while_redis_is_down_is_kept_and_answered_with_an_error_and_retry(
    worker: live.Worker, redis: RedisServer, conversation: Conversation, member: User
) -> None:
    with chat_socket(worker, conversation.pk, session_for(member)) as page:
        redis.stop()
        began = time.monotonic()
        page.send(action="send", content="Are you there?", model=MODEL)
        frame = page.wait_for("Are you there", within=3)
        assert time.monotonic() - began < 2
        # One frame: the message, and in place of the reply the error with its Retry.
        assert "status-error" in frame and METER_UNREACHABLE in frame
        assert '"action": "regenerate"}\'>Retry</button>' in frame
        assert "writing…" not in frame
    # The only tracebacks are the channel layer's own receive loop reporting the outage.
    assert [t for t in tracebacks(worker) if "channels_redis.pubsub" not in t] == []
    user_message, reply = list(conversation.messages.order_by("pk"))
    assert (user_message.role, user_message.content) == ("user", "Are you there?")
    assert (reply.role, reply.status, reply.error) == ("assistant", "error", METER_UNREACHABLE)


def test_the_socket_outlives_the_outage_and_retry_answers_once_redis_is_back(
    worker: live.Worker,
    redis: RedisServer,
    conversation: Conversation,
    member: User,
    mock: MockUpstream,
) -> None:
    mock.script(tokens=3)
    with chat_socket(worker, conversation.pk, session_for(member)) as page:
        redis.stop()
        page.send(action="send", content="Hello?", model=MODEL)
        page.wait_for("status-error", within=3)
        redis.start()
        # The channel layer subscribes again by itself: the same socket gets the stream.
        page.send(action="regenerate")
        final = page.wait_for("status-complete", within=10)
        assert "tok2" in final
    assert [(m.role, m.status) for m in conversation.messages.order_by("pk")] == [
        ("user", Message.Status.COMPLETE),
        ("assistant", Message.Status.COMPLETE),
    ]


def test_a_reply_streaming_when_redis_goes_down_still_ends_on_the_page(
    worker: live.Worker,
    redis: RedisServer,
    conversation: Conversation,
    member: User,
    mock: MockUpstream,
) -> None:
    mock.script(tokens=30, delay=0.05)
    with chat_socket(worker, conversation.pk, session_for(member)) as page:
        page.send(action="send", content="Count slowly", model=MODEL)
        page.wait_for(r"tok2\b")
        redis.stop()
        # The final frame is lost with Redis; the socket asks the database instead.
        final = page.wait_for("status-complete", within=8)
        assert "tok29" in final and "writing…" not in final
    reply = conversation.messages.get(role="assistant")
    assert reply.status == Message.Status.COMPLETE


def test_a_socket_opened_while_redis_is_down_is_refused_at_the_handshake_then_opens(
    worker: live.Worker, redis: RedisServer, conversation: Conversation, member: User
) -> None:
    session = session_for(member)
    redis.stop()
    with pytest.raises(InvalidStatus) as refused:
        chat_socket(worker, conversation.pk, session).__enter__()
    assert refused.value.response.status_code == 403  # the browser sees 1006 and retries
    redis.start()
    with chat_socket(worker, conversation.pk, session) as page:
        page.send(action="stop")
        with pytest.raises(TimeoutError):
            page.socket.recv(timeout=0.5)
    assert "chat socket refused: the channel layer is unreachable" in worker.log()
    assert tracebacks(worker) == []
