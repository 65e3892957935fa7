"""One object per event loop (`chatsite.loops.PerLoop`)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from chatsite.loops import PerLoop


def run_in_new_loop(coroutine):  # type: ignore[no-untyped-def]
    """Run `coroutine` on a loop of its own, closed after, leaving the thread's current loop
    alone (asyncio.run would unset it under the suite's session-wide loop)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


class Service:
    """Stands for a worker's background service, which may hold a task of its loop."""

    task: asyncio.Task[None] | None = None


def test_each_loop_gets_its_own_object_and_keeps_it() -> None:
    per_loop = PerLoop(Service)

    async def twice() -> tuple[Service, Service]:
        return per_loop.get(), per_loop.get()

    first, again = run_in_new_loop(twice())
    assert first is again
    later, _ = run_in_new_loop(twice())
    assert later is not first  # a new loop (even one with a closed loop's id) starts afresh


def test_an_object_goes_with_its_closed_loop_even_when_it_holds_one_of_its_tasks() -> None:
    per_loop = PerLoop(Service)

    async def start_service() -> weakref.ref[Service]:
        service = per_loop.get()
        service.task = asyncio.current_task()  # a finished task still refers to its loop
        return weakref.ref(service)

    gone = run_in_new_loop(start_service())
    run_in_new_loop(start_service())
    gc.collect()
    assert gone() is None


def test_pop_forgets_the_running_loops_object() -> None:
    per_loop = PerLoop(Service)

    async def replace() -> tuple[Service, Service | None, Service]:
        first = per_loop.get()
        popped = per_loop.pop()
        return first, popped, per_loop.get()

    first, popped, second = run_in_new_loop(replace())
    assert popped is first and second is not first
