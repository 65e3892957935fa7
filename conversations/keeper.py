"""The worker's keeper: heartbeats and database checkpoints for all of its running replies.

Batched so that a worker with 150 replies makes one Redis round trip and one database call
per second, not 150 of each. The heartbeat tells other workers a reply's runner is alive
(see `recovery`); the checkpoint keeps its text so far in the database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from chatsite.loops import PerLoop
from conversations import services, snapshots

if TYPE_CHECKING:
    from conversations.runner import ReplyRunner

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 1.0


class Keeper:
    """Beats for and checkpoints one event loop's runners while there are any."""

    def __init__(self) -> None:
        self.runners: set[ReplyRunner] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, runner: ReplyRunner) -> None:
        self.runners.add(runner)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, runner: ReplyRunner) -> None:
        self.runners.discard(runner)

    async def _run(self) -> None:
        checkpointing: asyncio.Task[None] | None = None
        while self.runners:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            runners = list(self.runners)
            try:
                await snapshots.beat_many([r.reply.pk for r in runners])
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            # A slow database must not hold up the heartbeat: other workers would take
            # these replies for dead.
            if checkpointing is None or checkpointing.done():
                checkpointing = asyncio.ensure_future(_checkpoint(runners))


async def _checkpoint(runners: list[ReplyRunner]) -> None:
    """Save the text of the replies that grew since their last checkpoint."""
    texts = {r: r.text for r in runners}
    changed = {r: text for r, text in texts.items() if len(text) != r.checkpointed_length}
    if not changed:
        return
    try:
        await database_sync_to_async(services.checkpoint_many)(
            [(r.reply.pk, text) for r, text in changed.items()]
        )
    except Exception:
        log.exception("checkpoint failed")
        return
    for r, text in changed.items():
        r.checkpointed_length = len(text)


keepers: PerLoop[Keeper] = PerLoop(Keeper)
