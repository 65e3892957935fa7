"""Admit a generation before it runs and charge it afterwards: the one meter for both doors.

Admission is atomic across workers (a Lua script in Redis): requests per minute, concurrent
generations and the daily token budget are checked and the request and concurrency slots
taken in one step. `Admission.charge()` writes the ledger row, adds the real token count to
the day's total and gives the concurrency slot back; call it exactly once, in a `finally`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings

from usage.models import Generation
from usage.redis import get_async_redis

# KEYS: per-minute counter, concurrency counter, today's tokens.
# ARGV: rpm limit, concurrency limit, daily token limit (0 = no limit).
_ADMIT = """
local rpm_limit = tonumber(ARGV[1])
local concurrency_limit = tonumber(ARGV[2])
local token_limit = tonumber(ARGV[3])
if token_limit > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= token_limit then
  return {0, 'quota', redis.call('TTL', KEYS[3])}
end
if concurrency_limit > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= concurrency_limit then
  return {0, 'concurrency', 1}
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if rpm_limit > 0 and count > rpm_limit then
  return {0, 'rate', redis.call('TTL', KEYS[1])}
end
redis.call('INCR', KEYS[2])
-- A worker that dies mid-generation cannot leak a slot for longer than an hour.
redis.call('EXPIRE', KEYS[2], 3600)
return {1, 'ok', 0}
"""

_RELEASE = """
local left = redis.call('DECR', KEYS[1])
if left < 0 then redis.call('SET', KEYS[1], 0) end
return left
"""

_MESSAGES = {
    "quota": "You exceeded your daily token quota. It resets at midnight UTC.",
    "concurrency": "Too many generations at once for your account. Wait for one to finish.",
    "rate": "Too many requests this minute. Slow down and retry shortly.",
    "unavailable": "The usage meter cannot be reached right now. Try again in a moment.",
}


class Refused(Exception):
    """The meter refused a generation: `kind` is quota, concurrency, rate or unavailable."""

    def __init__(self, kind: str, retry_after: int) -> None:
        self.kind = kind
        self.retry_after = max(int(retry_after), 1)
        super().__init__(_MESSAGES[kind])

    @property
    def message(self) -> str:
        return str(self)

    @property
    def is_quota(self) -> bool:
        """A spent budget: retrying soon will not help."""
        return self.kind == "quota"


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    concurrent: int
    tokens_per_day: int

    @classmethod
    def for_user(cls, user: object) -> Limits:
        """The role's defaults from settings (0 means unlimited)."""
        role = getattr(user, "role", "member")
        table = settings.QUOTAS.get(role) or settings.QUOTAS["member"]
        return cls(**table)


def _today() -> str:
    return datetime.now(UTC).strftime("%Y%m%d")


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1


@dataclass
class Admission:
    """A generation the meter let through; charge it exactly once."""

    user: object
    door: str
    api_key: object | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    _started: float = field(default_factory=time.monotonic)
    _charged: bool = False

    async def charge(
        self,
        *,
        model: str,
        connection: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        usage_source: str = "upstream",
        status: str = Generation.Status.OK,
        error: str = "",
    ) -> Generation | None:
        """Record the generation in the ledger and give the concurrency slot back."""
        if self._charged:
            return None
        self._charged = True
        user_id = self.user.pk  # type: ignore[attr-defined]
        redis = get_async_redis()
        tokens_key = f"usage:tokens:{user_id}:{_today()}"
        pipe = redis.pipeline(transaction=False)
        pipe.eval(_RELEASE, 1, f"usage:concurrent:{user_id}")
        pipe.incrby(tokens_key, prompt_tokens + completion_tokens)
        pipe.expire(tokens_key, 2 * 86400)
        await pipe.execute()
        return await sync_to_async(Generation.objects.create)(
            user_id=user_id,
            api_key=self.api_key,
            door=self.door,
            model=model[:200],
            connection=connection[:100],
            prompt_tokens=max(prompt_tokens, 0),
            completion_tokens=max(completion_tokens, 0),
            usage_source=usage_source,
            status=status,
            error=error[:500],
            started_at=self.started_at,
            duration_ms=int((time.monotonic() - self._started) * 1000),
        )


async def admit(user: object, *, door: str, api_key: object | None = None) -> Admission:
    """Let a generation start, or raise `Refused` with how long to wait."""
    limits = Limits.for_user(user)
    user_id = user.pk  # type: ignore[attr-defined]
    minute = int(time.time() // 60)
    allowed, kind, retry_after = await get_async_redis().eval(
        _ADMIT,
        3,
        f"usage:rpm:{user_id}:{minute}",
        f"usage:concurrent:{user_id}",
        f"usage:tokens:{user_id}:{_today()}",
        limits.requests_per_minute,
        limits.concurrent,
        limits.tokens_per_day,
    )
    if not int(allowed):
        if kind == "quota":
            retry_after = _seconds_to_midnight()  # the counter itself lives two days
        raise Refused(kind, retry_after)
    return Admission(user=user, door=door, api_key=api_key)
