"""Fixed-window allowances in Redis (login throttling): reserved before the act they limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatsite.redis import COUNT_IN_WINDOW, get_redis

# KEYS: the buckets. ARGV: window seconds, then each bucket's limit.
# Refuses (counting nothing) when any bucket is full; otherwise counts one in every bucket.
_RESERVE = (
    COUNT_IN_WINDOW
    + """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    return {0, redis.call('TTL', key)}
  end
end
for _, key in ipairs(KEYS) do count_in_window(key, ARGV[1]) end
return {1, 0}
"""
)

# KEYS: one bucket. Takes one count back, never below zero; the window stays as it was.
_GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Reservation:
    """Whether an act was allowed (and counted), or how long until it is."""

    allowed: bool
    retry_after: int = 0


def reserve(buckets: Sequence[tuple[str, int]], window_seconds: int) -> Reservation:
    """Count one act in every `(bucket, limit)` at once, or none when any is at its limit."""
    keys = [f"limit:{bucket}" for bucket, _ in buckets]
    allowed, ttl = get_redis().eval(
        _RESERVE, len(keys), *keys, window_seconds, *(limit for _, limit in buckets)
    )
    if int(allowed):
        return Reservation(True)
    return Reservation(False, max(int(ttl), 1))


def give_back(bucket: str) -> None:
    """Uncount one act that turned out not to count (a successful sign-in, say)."""
    get_redis().eval(_GIVE_BACK, 1, f"limit:{bucket}")


def clear(bucket: str) -> None:
    """Forget a bucket (after a successful login, say)."""
    get_redis().delete(f"limit:{bucket}")
