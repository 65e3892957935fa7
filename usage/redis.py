"""The project's Redis clients (one per process), used by `usage` and the runner snapshots."""

from __future__ import annotations

from functools import cache

import redis
import redis.asyncio
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    """The process-wide synchronous client."""
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


_async_clients: dict[int, redis.asyncio.Redis] = {}


def get_async_redis() -> redis.asyncio.Redis:
    """An asyncio client bound to the running event loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        # No CLIENT SETINFO on each new connection: a burst of requests opens many at once,
        # and those are two more round trips before each one's first command.
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, decode_responses=True, lib_name=None, lib_version=None
        )
        _async_clients[id(loop)] = client
    return client


def ping_redis() -> bool:
    """True when Redis answers."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
