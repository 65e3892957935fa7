"""The project's Redis clients (one per process), used by `usage` and the runner snapshots."""

from __future__ import annotations

from functools import cache

import redis
import redis.asyncio
from django.conf import settings
from redis.commands.core import AsyncScript


@cache
def get_redis() -> redis.Redis:
    """The process-wide synchronous client."""
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


# Per worker process: enough for every concurrent command of a busy worker, few enough that
# Redis (10,000 clients by default) serves dozens of workers.
REDIS_CONNECTIONS = 32
REDIS_WAIT_SECONDS = 5

_async_clients: dict[int, redis.asyncio.Redis] = {}


def get_async_redis() -> redis.asyncio.Redis:
    """An asyncio client bound to the running event loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None:
        # redis-py's default pool opens new connections while holding its lock, so a burst
        # of a hundred requests queued behind a hundred connects, one at a time (~100 ms
        # before the last was admitted, bench/README.md); the blocking pool connects outside
        # its lock and keeps a burst to a bounded set of connections, each busy for
        # microseconds. No CLIENT SETINFO: two more round trips per new connection.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=REDIS_CONNECTIONS,
            timeout=REDIS_WAIT_SECONDS,
            # A Redis that stops answering fails each command within seconds instead of
            # holding all the pool's connections for the kernel's retransmission timeout.
            socket_timeout=REDIS_WAIT_SECONDS,
            socket_connect_timeout=REDIS_WAIT_SECONDS,
            health_check_interval=30,
            decode_responses=True,
            lib_name=None,
            lib_version=None,
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        _async_clients[id(loop)] = client
    return client


_async_scripts: dict[tuple[int, str], AsyncScript] = {}


def get_async_script(source: str) -> AsyncScript:
    """A Lua script on the running loop's client: sent by its SHA, its text only once."""
    client = get_async_redis()
    script = _async_scripts.get((id(client), source))
    if script is None:
        script = _async_scripts[id(client), source] = client.register_script(source)
    return script


def ping_redis() -> bool:
    """True when Redis answers."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
