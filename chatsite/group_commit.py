"""Group commit: the writes that arrive while one is in flight go together in the next one.

A worker's writes of one kind (the meter's ledger rows, for one) each cost a trip to the
database thread and a transaction, and on a busy worker every statement waits for the
interpreter's lock (docs/architecture.md). A `GroupCommit` writes the first item at once;
items submitted while that write is in flight wait for it to end and then go in one trip,
through `write_many`, whatever their number. An idle worker adds no delay; a busy one makes
fewer, larger writes. Each caller still waits for its own item and gets its own result or
error, and an item is written even if its caller is cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """One event loop's writes of one kind, grouped (make one per loop: `PerLoop`).

    `write_many(items)` runs on the database thread and answers, for each item in order,
    its result or the exception that kept it from being written.
    """

    def __init__(self, write_many: Callable[[list[Item]], Sequence[Result | Exception]]) -> None:
        self.write_many = write_many
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Write `item` with the next group; its result, or its error raised."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.task is None or self.task.done():
            # In a context of its own: one made inside a page request's would run its
            # writes on that request's thread, which ends with the request.
            self.task = asyncio.get_running_loop().create_task(
                self._drain(), context=contextvars.Context()
            )
        # Shielded: a caller that is cancelled leaves its item to be written all the same.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting, []
            try:
                results = await database_sync_to_async(self.write_many)([i for i, _ in group])
                if len(results) != len(group):
                    raise RuntimeError(f"{len(results)} results for {len(group)} items")
            except Exception as exc:
                log.exception("a group of %d writes failed", len(group))
                results = [exc] * len(group)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
