"""Stop requests for replies, from any worker to the worker running the reply.

A stop goes to one group that every worker with running replies listens on, naming the
conversation; each worker stops its own runners of that conversation. One subscription per
worker, taken while it has runners, costs the channel layer far less than one channel and
one group per reply: channels-redis serializes every subscribe and unsubscribe of a worker
behind one lock, and a busy worker's sockets waited seconds on it to close (bench/README.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from chatsite.loops import PerLoop

log = logging.getLogger(__name__)

GROUP = "reply-stops"
STOP = "reply.stop"
# How long a worker keeps listening after its last runner ended: a steady stream of replies
# does not subscribe and unsubscribe again for each.
LINGER = 30.0


async def request_stop(conversation_id: int) -> None:
    """Ask the conversation's runner, on whichever worker, to stop."""
    await get_channel_layer().group_send(GROUP, {"type": STOP, "conversation": conversation_id})


class StopListener:
    """One event loop's listener: the stop callbacks of its running replies, by conversation."""

    def __init__(self, linger: float = LINGER) -> None:
        self.linger = linger
        self.callbacks: dict[int, set[Callable[[], None]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] | None = None
        self.idle: asyncio.TimerHandle | None = None

    async def watch(self, conversation_id: int, on_stop: Callable[[], None]) -> None:
        """Call `on_stop` when a stop for the conversation arrives, until `unwatch`. Returns
        once this worker is listening (a stop sent after that reaches it)."""
        self.callbacks.setdefault(conversation_id, set()).add(on_stop)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.task is None or self.task.done():
            loop = asyncio.get_running_loop()
            self.ready = loop.create_future()
            self.task = loop.create_task(self._listen(self.ready), name="reply-stops")
        assert self.ready is not None
        await asyncio.shield(self.ready)

    def unwatch(self, conversation_id: int, on_stop: Callable[[], None]) -> None:
        callbacks = self.callbacks.get(conversation_id, set())
        callbacks.discard(on_stop)
        if not callbacks:
            self.callbacks.pop(conversation_id, None)
        if not self.callbacks and self.task is not None and self.idle is None:
            self.idle = asyncio.get_running_loop().call_later(self.linger, self._stop_if_idle)

    async def close(self) -> None:
        """Stop listening now (the worker's loop is ending), and wait until it has."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _stop_if_idle(self) -> None:
        self.idle = None
        if not self.callbacks and self.task is not None:
            self.task.cancel()  # the layer unsubscribes a channel whose receive is cancelled
            self.task = None

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        layer = get_channel_layer()
        channel = ""
        try:
            channel = await layer.new_channel()
            await layer.group_add(GROUP, channel)
            ready.set_result(None)
            while True:
                self._deliver(await layer.receive(channel))
        except Exception as exc:
            if ready.done():
                log.warning("the stop listener failed: %s", exc)
            else:
                ready.set_exception(exc)
        finally:
            if self.task is asyncio.current_task():
                self.task = None
            if not ready.done():
                ready.cancel()
            if channel:
                await _leave(layer, channel)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != STOP:
            return
        for on_stop in list(self.callbacks.get(message.get("conversation"), ())):
            on_stop()


async def _leave(layer: Any, channel: str) -> None:
    try:
        await layer.group_discard(GROUP, channel)
    except Exception as exc:
        log.warning("could not leave the stop group: %s", exc)


stop_listeners: PerLoop[StopListener] = PerLoop(StopListener)
