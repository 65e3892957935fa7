"""The worker's Redis client under a burst: every concurrent command gets a connection."""

from __future__ import annotations

import asyncio

from chatsite.redis import get_async_redis, get_redis

# A burst of API streams on one worker: each request holds a connection for a whole round
# trip, so 150 at once need about 150 connections (bench/README.md).
BURST = 150


def blocked_clients() -> int:
    return int(get_redis().info("clients")["blocked_clients"])


async def test_a_burst_of_commands_reaches_redis_at_once() -> None:
    client = get_async_redis()
    keys = [f"test:burst:{i}" for i in range(BURST)]
    # Commands that stay in Redis until released: none of them may wait for another's
    # connection to come back to the pool.
    waiting = [asyncio.create_task(client.blpop([key], timeout=3)) for key in keys]
    try:
        for _ in range(100):  # up to 2 s for the burst to arrive
            blocked = await asyncio.to_thread(blocked_clients)
            if blocked >= BURST:
                break
            await asyncio.sleep(0.02)
    finally:
        for key in keys:
            get_redis().rpush(key, 1)
        answers = await asyncio.gather(*waiting, return_exceptions=True)
        get_redis().delete(*keys)
    assert blocked >= BURST  # 32 pooled connections left the rest of the burst waiting
    assert [answer for answer in answers if isinstance(answer, BaseException)] == []
