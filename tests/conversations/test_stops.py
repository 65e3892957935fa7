"""Stop requests reach the runners of a conversation through one subscription per worker."""

from __future__ import annotations

import asyncio

from chatsite.redis import get_redis
from conversations.stops import GROUP, StopListener, request_stop

# The Redis channel of the stop group (channels-redis's pub/sub naming, default prefix).
GROUP_CHANNEL = f"asgi__group__{GROUP}"


def subscribed_channels() -> set[str]:
    return set(get_redis().pubsub_channels())


async def wait_for(condition, within: float = 3.0) -> bool:
    for _ in range(int(within / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def test_a_stop_reaches_the_runners_of_its_conversation_only() -> None:
    listener = StopListener()
    stopped: list[str] = []
    await listener.watch(1, lambda: stopped.append("one"))
    await listener.watch(1, lambda: stopped.append("one again"))
    await listener.watch(2, lambda: stopped.append("two"))
    await request_stop(1)
    assert await wait_for(lambda: len(stopped) == 2)
    await asyncio.sleep(0.1)
    assert sorted(stopped) == ["one", "one again"]
    await listener.close()


async def test_a_stop_after_unwatch_reaches_nobody() -> None:
    listener = StopListener()
    stopped: list[int] = []

    def on_stop() -> None:
        stopped.append(3)

    await listener.watch(3, on_stop)
    listener.unwatch(3, on_stop)
    await request_stop(3)
    await asyncio.sleep(0.3)
    assert stopped == []
    await listener.close()


async def test_many_runners_share_one_subscription_which_ends_when_idle() -> None:
    before = await asyncio.to_thread(subscribed_channels)
    listener = StopListener(linger=0.2)
    callbacks = [lambda: None for _ in range(20)]
    for conversation, on_stop in enumerate(callbacks):
        await listener.watch(conversation, on_stop)
    during = await asyncio.to_thread(subscribed_channels)
    # One channel of the worker's own, in the group, however many replies run (the group
    # may have been subscribed already by another listener of this test process).
    assert len(during - before - {GROUP_CHANNEL}) == 1
    assert GROUP_CHANNEL in during
    for conversation, on_stop in enumerate(callbacks[:-1]):
        listener.unwatch(conversation, on_stop)
    await asyncio.sleep(0.4)
    assert listener.task is not None  # one reply still runs
    listener.unwatch(len(callbacks) - 1, callbacks[-1])
    assert await wait_for(lambda: listener.task is None)

    async def left() -> bool:
        return not (await asyncio.to_thread(subscribed_channels) - before - {GROUP_CHANNEL})

    for _ in range(100):
        if await left():
            break
        await asyncio.sleep(0.02)
    assert await left()
