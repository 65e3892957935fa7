"""The project's Redis clients (one per process), used by `usage` and the runner snapshots."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from functools import cache

import redis
import redis.asyncio
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript


@cache
def get_redis() -> redis.Redis:
    """The process-wide synchronous client."""
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


# Per worker process: enough for every concurrent command of a busy worker, few enough that
# Redis (10,000 clients by default) serves dozens of workers.
REDIS_CONNECTIONS = 32
REDIS_WAIT_SECONDS = 5


@dataclass
class _LoopClient:
    """One event loop's client and the Lua scripts registered on it."""

    client: redis.asyncio.Redis
    scripts: dict[str, AsyncScript] = field(default_factory=dict)


# Keyed by the loop itself, not its id: a closed loop's id may be reused by a new loop,
# which must not inherit a client bound to the old one.
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
    weakref.WeakKeyDictionary()
)


def _loop_client() -> _LoopClient:
    loop = asyncio.get_running_loop()
    found = _loop_clients.get(loop)
    if found is None:
        found = _loop_clients[loop] = _LoopClient(_new_async_client())
    return found


def _new_async_client() -> redis.asyncio.Redis:
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
        # A pooled connection that Redis dropped (it restarted) fails once on its next use:
        # send that command again on a new connection instead of failing the request.
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[redis.ConnectionError],
        decode_responses=True,
        lib_name=None,
        lib_version=None,
    )
    return redis.asyncio.Redis(connection_pool=pool)


def get_async_redis() -> redis.asyncio.Redis:
    """An asyncio client bound to the running event loop."""
    return _loop_client().client


def get_async_script(source: str) -> AsyncScript:
    """A Lua script on the running loop's client: sent by its SHA, its text only once."""
    found = _loop_client()
    script = found.scripts.get(source)
    if script is None:
        script = found.scripts[source] = found.client.register_script(source)
    return script


def ping_redis() -> bool:
    """True when Redis answers."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
