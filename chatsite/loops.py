"""One object per event loop: for a worker's background services (publisher, keeper, sweeper,
Redis clients, lease renewal), which must never be shared by two loops.

Daphne runs one loop per process; tests and `async_to_sync` start others. Entries are keyed
by the loop itself, not its id (a new loop may get a closed one's id), and go away with
their loop: weakly held, and dropped once their loop is closed, even when the object
still refers to it (a finished task does).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """One `T` per running event loop, made by `factory` on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        """The running loop's object, made now if it has none."""
        loop = asyncio.get_running_loop()
        value = self._values.get(loop)
        if value is None:
            self._drop_closed()
            value = self._values[loop] = self._factory()
        return value

    def pop(self) -> T | None:
        """Forget the running loop's object (to make a new one next time); it, or None."""
        return self._values.pop(asyncio.get_running_loop(), None)

    def _drop_closed(self) -> None:
        for loop in [loop for loop in self._values if loop.is_closed()]:
            self._values.pop(loop, None)
