"""Admit a generation before it runs and charge it afterwards: the one meter for both doors.

Admission is atomic across workers (a Lua script in Redis): requests per minute, concurrent
generations and the daily token budget are checked, and a request, a concurrency slot and a
token reservation taken, in one step. `Admission.charge()` writes the ledger row, puts the
real token count in place of the reservation and gives the slot back; call it exactly once,
in a `finally`. A slot whose worker died lapses after `USAGE_SLOT_SECONDS`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings

from usage.models import Generation
from usage.redis import get_async_script, get_redis

# KEYS: per-minute counter, running generations (a sorted set: slot id -> expiry), tokens
# spent today, tokens reserved today by generations still running.
# ARGV: rpm limit, concurrency limit, daily token limit (0 = no limit), now, slot id,
# tokens to reserve, slot lifetime.
_ADMIT = """
local rpm_limit = tonumber(ARGV[1])
local concurrency_limit = tonumber(ARGV[2])
local token_limit = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local reserve = tonumber(ARGV[6])
if token_limit > 0 then
  local spent = tonumber(redis.call('GET', KEYS[3]) or '0')
  local reserved = tonumber(redis.call('GET', KEYS[4]) or '0')
  if spent + reserved >= token_limit then return {0, 'quota', 0} end
  -- Reserve at most what is left: the next generation finds the budget taken.
  reserve = math.min(reserve, token_limit - spent - reserved)
end
-- A slot whose worker died without giving it back lapses at its expiry.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if concurrency_limit > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency_limit then
  return {0, 'concurrency', 1}
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 60) end
if rpm_limit > 0 and count > rpm_limit then
  return {0, 'rate', redis.call('TTL', KEYS[1])}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), ARGV[5])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
redis.call('INCRBY', KEYS[4], reserve)
redis.call('EXPIRE', KEYS[4], 2 * 86400)
return {1, 'ok', reserve}
"""

# KEYS: running generations, tokens spent today, tokens reserved on the day of admission.
# ARGV: slot id, tokens spent, tokens that were reserved.
_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('INCRBY', KEYS[2], tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[2], 2 * 86400)
if tonumber(redis.call('DECRBY', KEYS[3], tonumber(ARGV[3]))) < 0 then
  redis.call('SET', KEYS[3], 0, 'EX', 2 * 86400)
end
return 1
"""

# Reserved per generation for the reply, on top of its prompt, until the real count is known.
REPLY_RESERVE = 512

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


def spent_key(user_id: int, day: str | None = None) -> str:
    """The Redis counter of the tokens a user spent on `day` (today by default)."""
    return f"usage:tokens:{user_id}:{day or _today()}"


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
    slot: str = ""
    reserved: int = 0
    day: str = field(default_factory=lambda: _today())
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
        await get_async_script(_SETTLE)(
            keys=[
                f"usage:running:{user_id}",
                spent_key(user_id),
                f"usage:reserved:{user_id}:{self.day}",
            ],
            args=[self.slot, max(prompt_tokens, 0) + max(completion_tokens, 0), self.reserved],
        )
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


async def admit(
    user: object, *, door: str, api_key: object | None = None, prompt_tokens: int = 0
) -> Admission:
    """Let a generation start, or raise `Refused` with how long to wait.

    It reserves `prompt_tokens` plus a reply's worth against the day's budget until
    `charge()` puts the real count in their place, so concurrent generations cannot all
    start on the last few tokens of a budget.
    """
    limits = Limits.for_user(user)
    user_id = user.pk  # type: ignore[attr-defined]
    now = time.time()
    day = _today()
    slot = uuid.uuid4().hex
    allowed, kind, detail = await get_async_script(_ADMIT)(
        keys=[
            f"usage:rpm:{user_id}:{int(now // 60)}",
            f"usage:running:{user_id}",
            spent_key(user_id, day),
            f"usage:reserved:{user_id}:{day}",
        ],
        args=[
            limits.requests_per_minute,
            limits.concurrent,
            limits.tokens_per_day,
            now,
            slot,
            max(prompt_tokens, 0) + REPLY_RESERVE,
            settings.USAGE_SLOT_SECONDS,
        ],
    )
    if not int(allowed):
        # `detail` is how long the refusal lasts; a spent budget lasts until midnight UTC.
        raise Refused(kind, _seconds_to_midnight() if kind == "quota" else int(detail))
    # Once admitted, `detail` is the number of tokens reserved.
    return Admission(
        user=user, door=door, api_key=api_key, slot=slot, reserved=int(detail), day=day
    )


def record_interrupted(
    user_id: int, *, model: str, prompt_tokens: int, completion_tokens: int, started_at: datetime
) -> Generation:
    """A generation whose worker died: its estimated tokens count like any others.

    No admission survives the worker, so there is nothing to give back: its slot lapses.
    """
    tokens_key = spent_key(user_id)
    pipe = get_redis().pipeline(transaction=False)
    pipe.incrby(tokens_key, prompt_tokens + completion_tokens)
    pipe.expire(tokens_key, 2 * 86400)
    pipe.execute()
    return Generation.objects.create(
        user_id=user_id,
        door=Generation.Door.WEB,
        model=model[:200],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        usage_source="estimated",
        status=Generation.Status.INTERRUPTED,
        error="the worker streaming this reply stopped",
        started_at=started_at,
    )
