"""Replies whose worker died: found by any live worker, marked interrupted, shown everywhere.

A runner's keeper refreshes its reply's heartbeat in Redis every second. Each worker runs
one sweeper task that looks, every SWEEP_INTERVAL, for replies still `streaming` in the
database whose heartbeat is gone. A reply is recovered only when its heartbeat is missing
on two sweeps in a row, so that a Redis restart (which drops every heartbeat until the
keepers write them again, within a second) never interrupts a live reply. Recovering
claims the row (one conditional update, so two workers never both do it), keeps the best
text known (snapshot or checkpoint), charges its estimated cost, closes the snapshot and
tells every open page of the conversation to re-read the turn.

With a heartbeat lifetime of 4 s and a sweep every 1.5 s, a dead worker's reply is
recovered within about 7 s.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from chatsite.loops import PerLoop
from conversations import runner, services, snapshots
from conversations.keeper import keepers
from conversations.models import Message

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.5
# A reply younger than its first heartbeat's lifetime may not have written one yet.
GRACE = timedelta(seconds=snapshots.HEARTBEAT_TTL)


def ensure_sweeping() -> None:
    """Start this worker's sweeper if it is not running (cheap; call it on any request).

    `ORPHAN_SWEEP` off (the in-process test suite) leaves sweeping to explicit calls.
    """
    if settings.ORPHAN_SWEEP:
        sweepers.get().ensure_running()


def streaming_reply_ids() -> list[int]:
    """Replies still streaming in the database and old enough to have a heartbeat."""
    cutoff = timezone.now() - GRACE
    return list(
        Message.objects.filter(status=Message.Status.STREAMING, created_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def recover(reply_id: int, text: str | None) -> int | None:
    """Mark a reply whose runner is gone as interrupted; its conversation id, or None when
    another worker (or the runner itself) settled it first."""
    reply = (
        Message.objects.select_related("conversation")
        .filter(pk=reply_id, status=Message.Status.STREAMING)
        .first()
    )
    if reply is None or services.interrupt_reply(reply, text) is None:
        return None
    return reply.conversation_id


async def recover_dead(reply_id: int) -> bool:
    """Recover one reply whose heartbeat is gone, and tell its open pages. True if done."""
    snapshot = await snapshots.read(reply_id)
    conversation_id = await database_sync_to_async(recover)(
        reply_id, snapshot.text if snapshot else None
    )
    if conversation_id is None:
        return False
    log.warning("reply %s lost its worker: marked interrupted", reply_id)
    await snapshots.finish(reply_id, snapshot.seq if snapshot else 0)
    await get_channel_layer().group_send(runner.group(conversation_id), {"type": "turn.refresh"})
    return True


def mark_orphaned_replies() -> str:
    """At start-up (`manage.py prepare`): recover the replies that no runner beats for.

    Other workers may be running: a reply whose heartbeat is alive is left alone.
    """
    count = 0
    for reply_id in streaming_reply_ids():
        if snapshots.is_alive(reply_id):
            continue
        snapshot = snapshots.read_sync(reply_id)
        if recover(reply_id, snapshot.text if snapshot else None) is not None:
            count += 1
    return f"Marked {count} orphaned replies as interrupted." if count else ""


class Sweeper:
    """One task per worker: recovers replies whose heartbeat stayed gone for two sweeps."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.suspects: set[int] = set()  # heartbeat missing at the last sweep

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="reply-sweeper")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:
                log.warning("could not sweep for orphaned replies", exc_info=True)

    async def sweep(self) -> list[int]:
        """One pass: the replies recovered."""
        # This worker's own runners are alive whatever their heartbeat says (a loop busy
        # for seconds delays the beat, not the reply).
        own = {runner.reply.pk for runner in keepers.get().runners}
        found = await database_sync_to_async(streaming_reply_ids)()
        candidates = [reply_id for reply_id in found if reply_id not in own]
        alive = await snapshots.alive_many(candidates)
        dead = {reply for reply, beating in zip(candidates, alive, strict=True) if not beating}
        confirmed, self.suspects = dead & self.suspects, dead
        recovered = []
        for reply_id in sorted(confirmed):
            if await recover_dead(reply_id):
                recovered.append(reply_id)
            self.suspects.discard(reply_id)
        return recovered


sweepers: PerLoop[Sweeper] = PerLoop(Sweeper)
