"""Fixed-window counters in Redis: login throttling and request rates."""

from __future__ import annotations

from dataclasses import dataclass

from usage.redis import get_redis

# INCR and set the expiry on the first hit, atomically, so a crash between the two
# cannot leave a counter that never expires.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {count, ttl}
"""


@dataclass(frozen=True)
class Window:
    count: int
    retry_after: int

    def exceeded(self, limit: int) -> bool:
        return self.count > limit


def hit(bucket: str, window_seconds: int) -> Window:
    """Count one event in `bucket` for the current window."""
    count, ttl = get_redis().eval(_HIT, 1, f"limit:{bucket}", window_seconds)
    return Window(count=int(count), retry_after=max(int(ttl), 1))


def peek(bucket: str) -> Window:
    """Read a bucket without counting."""
    client = get_redis()
    pipe = client.pipeline()
    pipe.get(f"limit:{bucket}")
    pipe.ttl(f"limit:{bucket}")
    count, ttl = pipe.execute()
    return Window(count=int(count or 0), retry_after=max(int(ttl or 0), 1))


def clear(bucket: str) -> None:
    """Forget a bucket (after a successful login, say)."""
    get_redis().delete(f"limit:{bucket}")
