"""The site's Redis connections: one synchronous client per process, one asyncio client per
event loop with the Lua scripts registered on it, and Lua pieces that several scripts share."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import redis
import redis.asyncio
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from chatsite.loops import PerLoop


@cache
def get_redis() -> redis.Redis:
    """The process-wide synchronous client."""
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)


# Per worker process: a connection is held for a whole round trip, event-loop turns
# included, so a burst of requests needs about one each (32 queued a burst of 150 for up to
# 0.9 s, bench/README.md); few enough that Redis (10,000 clients by default) serves dozens
# of workers.
REDIS_CONNECTIONS = 256
REDIS_WAIT_SECONDS = 5


@dataclass
class _LoopClient:
    """One event loop's client and the Lua scripts registered on it."""

    client: redis.asyncio.Redis
    scripts: dict[str, AsyncScript] = field(default_factory=dict)


def _new_async_client() -> redis.asyncio.Redis:
    # redis-py's default pool opens new connections while holding its lock, so a burst of
    # requests queues behind one connect after another (bench/README.md); the blocking pool
    # connects outside its lock and keeps a burst to a bounded set of connections. No CLIENT
    # SETINFO: two more round trips per new connection.
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


# A client's connections belong to the loop that opened them: one client per loop.
_loop_clients: PerLoop[_LoopClient] = PerLoop(lambda: _LoopClient(_new_async_client()))


def get_async_redis() -> redis.asyncio.Redis:
    """An asyncio client bound to the running event loop."""
    return _loop_clients.get().client


def get_async_script(source: str) -> AsyncScript:
    """A Lua script on the running loop's client: sent by its SHA, its text only once."""
    found = _loop_clients.get()
    script = found.scripts.get(source)
    if script is None:
        script = found.scripts[source] = found.client.register_script(source)
    return script


# A Lua function for scripts that count in fixed windows: counts one more in `key` and starts
# its window on the first count, in the same step, so a crash between the two cannot leave a
# counter that never expires. Put it at the top of a script; it answers the new count.
COUNT_IN_WINDOW = """
local function count_in_window(key, seconds)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, seconds) end
  return count
end
"""


def ping_redis() -> bool:
    """True when Redis answers."""
    try:
        return bool(get_redis().ping())
    except redis.RedisError:
        return False
