"""Replies whose worker died are found by any worker's sweeper, marked and shown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import User
from chatsite.redis import get_async_redis
from conversations import recovery, snapshots
from conversations.models import Conversation, Message
from usage.models import Generation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]


@sync_to_async
def orphan(conversation: Conversation, content: str = "half an answer") -> Message:
    """A reply left streaming a minute ago by a runner that is gone."""
    conversation.messages.create(role="user", content="Tell me everything")
    return conversation.messages.create(
        role="assistant",
        status="streaming",
        content=content,
        model=conversation.model,
        created_at=timezone.now() - timedelta(minutes=1),
    )


async def status_of(reply: Message) -> str:
    await reply.arefresh_from_db()
    return reply.status


async def test_a_reply_without_heartbeat_on_two_sweeps_is_interrupted_and_every_page_told(
    sockets, conversation: Conversation
) -> None:
    reply = await orphan(conversation)
    page = await sockets(conversation.pk)
    assert (await page.connect())[0]
    await page.receive_until("half an answer")  # shown as still being written
    sweeper = recovery.Sweeper()
    assert await sweeper.sweep() == []  # first sight: only a suspect
    assert await status_of(reply) == Message.Status.STREAMING
    assert await sweeper.sweep() == [reply.pk]
    assert await status_of(reply) == Message.Status.INTERRUPTED
    frame = await page.receive_until("stopped while this reply")
    assert "half an answer" in frame
    generation = await Generation.objects.aget()
    assert (generation.status, generation.usage_source) == ("interrupted", "estimated")
    assert generation.completion_tokens > 0


async def test_a_live_reply_and_a_newborn_reply_are_left_alone(
    member: User, conversation: Conversation
) -> None:
    live = await orphan(conversation)
    await snapshots.start(live.pk)  # its runner beats
    other = await Conversation.objects.acreate(owner=member, model="m")
    newborn = await other.messages.acreate(role="assistant", status="streaming")
    sweeper = recovery.Sweeper()
    for _ in range(3):
        assert await sweeper.sweep() == []
    assert await status_of(live) == Message.Status.STREAMING
    assert await status_of(newborn) == Message.Status.STREAMING


async def test_a_heartbeat_missed_once_as_redis_restarts_does_not_interrupt(
    conversation: Conversation,
) -> None:
    reply = await orphan(conversation)
    await snapshots.start(reply.pk)
    sweeper = recovery.Sweeper()
    await get_async_redis().flushdb()  # Redis restarted: every heartbeat is gone
    assert await sweeper.sweep() == []
    await snapshots.beat_many([reply.pk])  # the runner's keeper beats again
    assert await sweeper.sweep() == []
    assert await sweeper.sweep() == []
    assert await status_of(reply) == Message.Status.STREAMING


async def test_a_heartbeat_listed_before_the_final_write_leaves_the_done_snapshot_short(
    conversation: Conversation,
) -> None:
    """The keeper lists its runners, the reply finishes, then the beat arrives: the done
    snapshot keeps its short expiry and gets no heartbeat (it lingered ten minutes)."""
    reply = await orphan(conversation)
    await snapshots.start(reply.pk)
    await snapshots.append(reply.pk, "all of it", seq=1)
    await snapshots.finish(reply.pk, seq=2)
    await snapshots.beat_many([reply.pk])
    redis = get_async_redis()
    assert 0 < await redis.ttl(f"chat:reply:{reply.pk}:text") <= snapshots.DONE_TTL
    assert 0 < await redis.ttl(f"chat:reply:{reply.pk}:meta") <= snapshots.DONE_TTL
    assert not await redis.exists(f"chat:reply:{reply.pk}:beat")


async def test_a_heartbeat_keeps_a_streaming_snapshot(conversation: Conversation) -> None:
    reply = await orphan(conversation)
    await snapshots.start(reply.pk)
    redis = get_async_redis()
    await redis.expire(f"chat:reply:{reply.pk}:text", 5)
    await snapshots.beat_many([reply.pk])
    assert await redis.ttl(f"chat:reply:{reply.pk}:text") > snapshots.DONE_TTL
    assert await redis.exists(f"chat:reply:{reply.pk}:beat")


async def test_two_workers_sweeping_the_same_orphan_charge_it_once(
    conversation: Conversation,
) -> None:
    reply = await orphan(conversation)
    worker_a, worker_b = recovery.Sweeper(), recovery.Sweeper()
    await worker_a.sweep()
    await worker_b.sweep()
    recovered = await worker_a.sweep() + await worker_b.sweep()
    assert recovered == [reply.pk]
    assert await Generation.objects.acount() == 1


async def test_the_snapshot_text_is_kept_when_newer_than_the_checkpoint(
    conversation: Conversation,
) -> None:
    reply = await orphan(conversation, content="half")
    await snapshots.start(reply.pk)
    await snapshots.append(reply.pk, "half and a bit more", 3)
    await get_async_redis().delete(f"chat:reply:{reply.pk}:beat")
    sweeper = recovery.Sweeper()
    await sweeper.sweep()
    await sweeper.sweep()
    await reply.arefresh_from_db()
    assert (reply.status, reply.content) == ("interrupted", "half and a bit more")
    snapshot = await snapshots.read(reply.pk)
    assert snapshot is not None and not snapshot.is_streaming


async def test_a_reply_of_this_workers_own_runner_is_never_taken_for_dead(
    sockets, conversation: Conversation, mock
) -> None:
    mock.script(tokens=400, delay=0.02)
    page = await sockets(conversation.pk)
    assert (await page.connect())[0]
    await page.send(action="send", content="Take your time", model=conversation.model)
    await page.receive_until(r"tok3\b")
    reply = await conversation.messages.filter(role="assistant").alast()
    await Message.objects.filter(pk=reply.pk).aupdate(  # as if it began a minute ago
        created_at=timezone.now() - timedelta(minutes=1)
    )
    await get_async_redis().delete(f"chat:reply:{reply.pk}:beat")  # a beat that came late
    sweeper = recovery.Sweeper()
    assert await sweeper.sweep() == []
    assert await sweeper.sweep() == []
    assert await status_of(reply) == Message.Status.STREAMING
    await page.send(action="stop")
    await page.receive_until("status-stopped")
