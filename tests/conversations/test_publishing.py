"""How updates leave the runner: batch interval, frames, snapshot writes, checkpoints."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from pytest_django import Settings

from accounts.models import User
from chatsite import channels_redis_adapter
from conversations import fragments, runner, services, snapshots
from conversations.models import Conversation, Message
from conversations.publisher import (
    BATCH_INTERVAL,
    COHORTS,
    MAX_BATCH_INTERVAL,
    Publisher,
    next_interval,
)


def test_an_idle_worker_publishes_at_the_base_interval() -> None:
    assert next_interval(BATCH_INTERVAL, 0.0) == BATCH_INTERVAL
    assert next_interval(BATCH_INTERVAL, 0.0005) == pytest.approx(BATCH_INTERVAL + 0.002)


def test_lag_makes_rounds_rarer_at_once_but_never_beyond_the_bound() -> None:
    assert next_interval(BATCH_INTERVAL, 0.01) > BATCH_INTERVAL + 0.02
    assert next_interval(BATCH_INTERVAL, 0.5) == MAX_BATCH_INTERVAL
    assert next_interval(MAX_BATCH_INTERVAL, 10.0) == MAX_BATCH_INTERVAL


def test_the_interval_comes_back_gradually_when_the_lag_is_gone() -> None:
    interval = MAX_BATCH_INTERVAL
    steps = []
    for _ in range(30):
        interval = next_interval(interval, 0.0)
        steps.append(interval)
    assert steps[0] < MAX_BATCH_INTERVAL and steps[0] > BATCH_INTERVAL + 0.05
    assert steps == sorted(steps, reverse=True)
    assert steps[-1] == pytest.approx(BATCH_INTERVAL, abs=1e-3)
    assert min(steps) >= BATCH_INTERVAL
    assert next_interval(0.0, -1.0) == BATCH_INTERVAL  # clock noise


class Streaming:
    """Stands in for a runner with text for every round: records the rounds that take it
    (by the publisher's turn) and has nothing to write."""

    def __init__(self, publisher: Publisher, taken: list[tuple[int, Streaming]]) -> None:
        self.publisher, self.taken = publisher, taken

    def take_update(self) -> None:
        self.taken.append((self.publisher.turn, self))


async def test_each_round_publishes_one_cohort_and_a_first_update_at_once() -> None:
    publisher = Publisher()
    taken: list[tuple[int, Streaming]] = []
    runners = [Streaming(publisher, taken) for _ in range(2 * COHORTS)]
    for stand_in in runners:
        publisher.mark(stand_in)  # type: ignore[arg-type]
    first_round = publisher.turn + 1
    async with asyncio.timeout(5):
        while len(taken) < 6 * len(runners):
            await asyncio.sleep(BATCH_INTERVAL / COHORTS / 2)
            for stand_in in runners:
                publisher.mark(stand_in)  # type: ignore[arg-type]
    for stand_in in runners:
        await publisher.settle(stand_in)  # type: ignore[arg-type]
    assert publisher.task is not None
    publisher.task.cancel()  # idle now; it would end on its own after IDLE_SECONDS
    # Every reply's first update went out in the first round, whatever its cohort.
    assert [turn for turn, _ in taken[: len(runners)]] == [first_round] * len(runners)
    later = taken[len(runners) :]
    # After that, each reply is taken only in its own cohort's rounds, the cohorts even.
    turns_of = {one: {turn for turn, r in later if r is one} for one in runners}
    assert all(len(turns) == 1 for turns in turns_of.values()), turns_of
    sizes = [sum(1 for t in turns_of.values() if t == {cohort}) for cohort in range(COHORTS)]
    assert sizes == [2] * COHORTS
    # A round takes one cohort: its replies, each once.
    rounds: list[list[Streaming]] = []
    for turn, one in later:
        if not rounds or turns_of[rounds[-1][0]] != {turn} or one in rounds[-1]:
            rounds.append([])
        rounds[-1].append(one)
    assert all(len(r) == 2 for r in rounds[:-1])
    assert not publisher.dirty and not publisher.cohorts


@pytest.mark.parametrize("appended", ["", "<p>done &amp; dusted</p>\n"])
def test_the_pre_split_update_frame_is_the_partial_rendered(appended: str) -> None:
    tail = "<p>open <em>tail</em></p>\n"
    expected = render_to_string(
        "conversations/frames.html#update",
        {"reply_id": 42, "appended": mark_safe(appended), "tail": mark_safe(tail)},
    )
    assert fragments.update_frame(42, appended, tail) == expected


@pytest.mark.asyncio(loop_scope="session")
async def test_a_write_is_idempotent_and_publishes_with_the_snapshot(
    settings: Settings,
) -> None:
    settings.LIBRARY_FALLBACKS = False  # the script publishes (see the adapter tests)
    reply_id = 987_654
    layer = get_channel_layer()
    observer = await layer.new_channel()
    await layer.group_add(runner.group(reply_id), observer)
    channel = channels_redis_adapter.group_channel(layer, runner.group(reply_id))
    assert channel, "the pub/sub layer on the project's Redis publishes in the script"
    try:
        await snapshots.start(reply_id)
        frame = {"type": "reply.frame", "message": reply_id, "seq": 1, "html": "x"}
        first = snapshots.Write(reply_id, 0, "héllo ", 1, channel=channel,
                                payload=channels_redis_adapter.payload(layer, frame))  # fmt: skip
        assert await snapshots.write_many([first]) == [None]
        async with asyncio.timeout(2):
            assert (await layer.receive(observer))["seq"] == 1
        # A retry of a write that had in fact gone through adds nothing twice; the next
        # one carries on after the bytes already there.
        offset = snapshots.utf8_length("héllo ")
        again = snapshots.Write(reply_id, 0, "héllo wor", 2)
        assert await snapshots.write_many([again]) == [None]
        last = snapshots.Write(reply_id, snapshots.utf8_length("héllo wor"), "ld", 3, done=True)
        assert offset == 7
        assert await snapshots.write_many([last]) == [None]
        snapshot = await snapshots.read(reply_id)
        assert snapshot is not None
        assert (snapshot.text, snapshot.seq, snapshot.status) == ("héllo world", 3, "done")
        assert not await snapshots.is_alive_async(reply_id)
        # A write that would leave a hole is refused, not applied.
        hole = snapshots.Write(reply_id, 100, "late", 4)
        (error,) = await snapshots.write_many([hole])
        assert error is not None
        assert (await snapshots.read(reply_id)).seq == 3  # type: ignore[union-attr]
    finally:
        await layer.group_discard(runner.group(reply_id), observer)


@pytest.mark.django_db
def test_checkpoints_save_only_replies_still_streaming(member: User) -> None:
    conversation = Conversation.objects.create(owner=member, model="m")
    streaming = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content=""
    )
    done = Message.objects.create(
        conversation=conversation, role="assistant", status="complete", content="final"
    )
    services.checkpoint_many([(streaming.pk, "so far"), (done.pk, "stale")])
    streaming.refresh_from_db()
    done.refresh_from_db()
    assert streaming.content == "so far" and streaming.checkpointed_at is not None
    assert done.content == "final" and done.checkpointed_at is None


@pytest.mark.django_db
def test_a_checkpoint_saves_each_reply_its_own_text_in_one_statement_per_chunk(
    member: User,
) -> None:
    """One UPDATE for many replies (not one per reply: each statement waits for the
    interpreter's lock on a busy worker), in chunks within the parameter limit."""
    conversation = Conversation.objects.create(owner=member, model="m")
    replies = Message.objects.bulk_create(
        Message(conversation=conversation, role="assistant", status="streaming", content="")
        for _ in range(700)
    )
    texts = [(reply.pk, f"reply {i}: it's 'quoted' ; ünïcode") for i, reply in enumerate(replies)]
    limit = connection.features.max_query_params or 999
    chunks = -(-len(texts) // ((limit - 2) // 3))
    ran: list[str] = []
    if connection.vendor == "sqlite":  # what SQLite itself runs, executemany's rows included
        connection.ensure_connection()
        connection.connection.set_trace_callback(ran.append)
    try:
        services.checkpoint_many(texts)
    finally:
        if connection.vendor == "sqlite":
            connection.connection.set_trace_callback(None)
    saved = dict(Message.objects.filter(conversation=conversation).values_list("pk", "content"))
    assert saved == dict(texts)
    if connection.vendor == "sqlite":
        assert len([sql for sql in ran if sql.startswith("UPDATE")]) == chunks
