"""The worker's publisher: one task per worker that sends the updates of all its replies.

Each reply belongs to one of COHORTS cohorts, dealt out in turn at its first round. Every
interval / COHORTS seconds a round takes the runners of the next cohort that have new
text (and any reply's first update, so that it shows at once), renders each one's update,
and writes their snapshots and frames to Redis in one round trip (the frame goes out in
the snapshot script when `chatsite.channels_redis_adapter` allows it, else through
`group_send` after the write). So each reply is published once an interval, and the
worker's rendering and the sockets' frames come in small, even rounds rather than one
burst per interval that every token behind it waits for. Tokens that arrive while their
cohort's round is in flight wait for its next one, and the interval grows with the event
loop's lag (see `next_interval`), so a busy worker sends larger, rarer updates instead of
queueing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from chatsite.loops import PerLoop
from conversations import snapshots

if TYPE_CHECKING:
    from conversations.runner import ReplyRunner

log = logging.getLogger(__name__)

# Time between two updates of one reply: BATCH_INTERVAL on an idle worker, growing by
# LAG_GAIN seconds per second of event-loop lag up to MAX_BATCH_INTERVAL, so that at most
# MAX_BATCH_INTERVAL (plus a round trip) separates a token from the frame that carries it.
BATCH_INTERVAL = 0.05
MAX_BATCH_INTERVAL = 0.15
LAG_GAIN = 4.0
# Rounds per interval, each for its own share of the replies.
COHORTS = 5
# A publisher with nothing to send for this long ends its task (the next update starts one).
IDLE_SECONDS = 30


def next_interval(current: float, lag: float) -> float:
    """The interval between a reply's updates, given how late the loop woke the publisher
    for its last round.

    Event-loop lag is the sign of a busy worker: each second of it adds LAG_GAIN seconds
    to the interval (so updates get rarer and carry more tokens each, which costs less CPU
    per token), between BATCH_INTERVAL and MAX_BATCH_INTERVAL. It rises at once and falls
    back a quarter of the way each round, so one quiet round does not undo it.
    """
    target = BATCH_INTERVAL + LAG_GAIN * max(0.0, lag)
    if target < current:
        target = current - (current - target) * 0.25
    return min(MAX_BATCH_INTERVAL, max(BATCH_INTERVAL, target))


class Publisher:
    """Publishes the updates of all of one event loop's runners, a cohort per round."""

    def __init__(self) -> None:
        self.dirty: dict[ReplyRunner, None] = {}  # an ordered set
        self.cohorts: dict[ReplyRunner, int] = {}
        self.next_cohort = 0  # dealt in turn to runners in their first round
        self.turn = 0  # the cohort of the latest round
        self.in_flight: frozenset[ReplyRunner] = frozenset()
        self.round_done: asyncio.Future[None] | None = None
        self.wake = asyncio.Event()
        self.interval = BATCH_INTERVAL
        self.task: asyncio.Task[None] | None = None

    def mark(self, runner: ReplyRunner) -> None:
        """`runner` has new text for its cohort's next round."""
        self.dirty[runner] = None
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def settle(self, runner: ReplyRunner) -> None:
        """Take `runner` out, once a round that carries its update is over."""
        self.dirty.pop(runner, None)
        self.cohorts.pop(runner, None)
        while runner in self.in_flight and self.round_done is not None:
            await asyncio.shield(self.round_done)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.dirty and not await self._wait_for_work():
                return  # idle: mark() starts a new task
            began = loop.time()
            self.turn = (self.turn + 1) % COHORTS
            # A runner with no cohort yet has sent no update: its first goes out now.
            due = [r for r in self.dirty if self.cohorts.get(r, self.turn) == self.turn]
            if due:
                await self._round(due)
            pause = max(0.0, self.interval / COHORTS - (loop.time() - began))
            slept = loop.time()
            await asyncio.sleep(pause)
            # How much later than asked the loop woke us: its lag.
            self.interval = next_interval(self.interval, loop.time() - slept - pause)

    async def _wait_for_work(self) -> bool:
        """Wait until a runner is marked; False when none was for IDLE_SECONDS."""
        self.wake.clear()
        try:
            async with asyncio.timeout(IDLE_SECONDS):
                await self.wake.wait()
        except TimeoutError:
            return bool(self.dirty)
        return True

    async def _round(self, runners: list[ReplyRunner]) -> None:
        for runner in runners:
            del self.dirty[runner]
            if runner not in self.cohorts:
                self.cohorts[runner] = self.next_cohort
                self.next_cohort = (self.next_cohort + 1) % COHORTS
        self.in_flight = frozenset(runners)
        self.round_done = asyncio.get_running_loop().create_future()
        try:
            taken = _take_updates(runners)
            errors = await snapshots.write_many([write for _, write in taken])
            for (runner, write), error in zip(taken, errors, strict=True):
                await _settle_write(runner, write, error)
        finally:
            self.in_flight = frozenset()
            self.round_done.set_result(None)


def _take_updates(runners: list[ReplyRunner]) -> list[tuple[ReplyRunner, snapshots.Write]]:
    """Each runner's rendered update, for those that have one."""
    taken = []
    for runner in runners:
        try:
            write = runner.take_update()
        except Exception:
            log.exception("could not render an update of reply %s", runner.reply.pk)
            continue
        if write is not None:
            taken.append((runner, write))
    return taken


async def _settle_write(
    runner: ReplyRunner, write: snapshots.Write, error: BaseException | None
) -> None:
    """Tell the runner how its write went; publish its frame if the write did not."""
    if error is not None:
        # Its sockets will see a seq gap and re-sync from the snapshot, which gets this
        # text with the runner's next write.
        runner.not_saved(write, error)
        return
    runner.saved(write)
    if not write.channel:
        try:
            await runner.send_frame()
        except Exception:
            log.exception("could not publish to %s", runner.group)


publishers: PerLoop[Publisher] = PerLoop(Publisher)
