"""Admit a generation before it runs and charge it afterwards: the one meter for both doors.

Admission is atomic across workers (a Lua script in Redis): requests per minute, concurrent
generations and the daily token budget are checked, and a request, a concurrency slot and a
token reservation taken, in one step. `Admission.charge()` writes the ledger row, puts the
real token count in place of the reservation and gives the slot back; call it exactly once,
in a `finally`.

A slot and its reservation are a lease of `USAGE_SLOT_LEASE_SECONDS` that the worker holding
them renews while the generation runs (one round trip per event loop for all its
generations). A worker that died stops renewing: its slot and reservation lapse within one
lease. Renewal writes them again in full, so a Redis that lost its data has the running
generations' slots and reservations back within one renewal.

The ledger (`Generation`) is the truth about tokens spent: a day's counter in Redis that is
missing (a new day, or a Redis that lost its data) is rebuilt from it before admitting.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F, Sum

from chatsite.loops import PerLoop
from chatsite.redis import COUNT_IN_WINDOW, get_async_redis, get_async_script, get_redis
from usage.models import Generation

log = logging.getLogger(__name__)

# KEYS: per-minute counter, running generations (a sorted set: slot -> lease expiry), their
# reservations (a hash: slot -> tokens), tokens spent today.
# ARGV: rpm limit, concurrency limit, daily token limit (0 = no limit), now, slot id,
# tokens to reserve, lease seconds.
# Answers {admitted, kind, detail}; kind 'missing' means today's spent counter must first be
# rebuilt from the ledger (nothing was counted).
_ADMIT = (
    COUNT_IN_WINDOW
    + """
local rpm_limit = tonumber(ARGV[1])
local concurrency_limit = tonumber(ARGV[2])
local token_limit = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local reserve = tonumber(ARGV[6])
local lease = tonumber(ARGV[7])
-- Slots whose worker stopped renewing them lapse, and their reservations with them.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, slot in ipairs(lapsed) do redis.call('HDEL', KEYS[3], slot) end
end
if token_limit > 0 then
  local spent = redis.call('GET', KEYS[4])
  if not spent then return {0, 'missing', 0} end
  local reserved = 0
  for _, tokens in ipairs(redis.call('HVALS', KEYS[3])) do
    reserved = reserved + tonumber(tokens)
  end
  local used = tonumber(spent) + reserved
  if used >= token_limit then return {0, 'quota', 0} end
  -- Reserve at most what is left: the next generation finds the budget taken.
  reserve = math.min(reserve, token_limit - used)
end
if concurrency_limit > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency_limit then
  return {0, 'concurrency', 1}
end
local count = count_in_window(KEYS[1], 60)
if rpm_limit > 0 and count > rpm_limit then
  return {0, 'rate', redis.call('TTL', KEYS[1])}
end
redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
redis.call('HSET', KEYS[3], ARGV[5], reserve)
redis.call('EXPIRE', KEYS[2], math.ceil(lease))
redis.call('EXPIRE', KEYS[3], math.ceil(lease))
return {1, 'ok', reserve}
"""
)

# KEYS: pairs of (running generations, their reservations), one pair per live slot.
# ARGV: the new lease expiry, lease seconds, then (slot id, tokens reserved) per pair.
_RENEW = """
local expiry = ARGV[1]
local ttl = math.ceil(tonumber(ARGV[2]))
for i = 1, #KEYS, 2 do
  local slot = ARGV[i + 2]
  redis.call('ZADD', KEYS[i], expiry, slot)
  redis.call('HSET', KEYS[i + 1], slot, ARGV[i + 3])
  redis.call('EXPIRE', KEYS[i], ttl)
  redis.call('EXPIRE', KEYS[i + 1], ttl)
end
return #KEYS / 2
"""

# KEYS: running generations, their reservations, tokens spent on the generation's day.
# ARGV: slot id, tokens spent.
# A missing counter is left missing: the next admission rebuilds it from the ledger, which
# already holds this generation's row.
_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('INCRBY', KEYS[3], ARGV[2]) end
return 1
"""

# KEYS: tokens spent on a day. ARGV: tokens. Counted only into a counter that exists.
_SPEND = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""

# Reserved per generation for the reply, on top of its prompt, until the real count is known.
REPLY_RESERVE = 512

# A day's spent counter outlives its day, for generations charged after midnight.
SPENT_TTL = 2 * 86400

# Renewals per lease: a renewal or two may fail (a Redis blip) before a lease lapses.
RENEWALS_PER_LEASE = 4

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


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def _today() -> str:
    return _day(datetime.now(UTC))


def spent_key(user_id: int, day: str | None = None) -> str:
    """The Redis counter of the tokens a user spent on `day` (today by default, UTC)."""
    return f"usage:tokens:{user_id}:{day or _today()}"


def _running_key(user_id: int) -> str:
    return f"usage:running:{user_id}"


def _reserved_key(user_id: int) -> str:
    return f"usage:reserved:{user_id}"


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - now).total_seconds()) + 1


def _lease_seconds() -> float:
    """How long a slot lasts unless renewed (a floor keeps renewals from spinning)."""
    return max(float(settings.USAGE_SLOT_LEASE_SECONDS), 0.2)


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
    _leases: _Leases | None = field(default=None, repr=False, compare=False)

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
        """Record the generation in the ledger and give the concurrency slot back.

        The ledger row is written first: it is the truth, and it is written even when Redis
        cannot be reached (the slot then lapses with its lease).
        """
        if self._charged:
            return None
        self._charged = True
        prompt_tokens, completion_tokens = max(prompt_tokens, 0), max(completion_tokens, 0)
        create = sync_to_async(Generation.objects.create)
        try:
            return await create(
                user_id=self.user.pk,  # type: ignore[attr-defined]
                api_key=self.api_key,
                door=self.door,
                model=model[:200],
                connection=connection[:100],
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                usage_source=usage_source,
                status=status,
                error=error[:500],
                started_at=self.started_at,
                duration_ms=int((time.monotonic() - self._started) * 1000),
            )
        finally:
            if self._leases is not None:
                await self._leases.release(self)
            await self._settle(prompt_tokens + completion_tokens)

    async def _settle(self, tokens: int) -> None:
        """Give the slot and its reservation back and count the tokens spent."""
        user_id = self.user.pk  # type: ignore[attr-defined]
        try:
            await get_async_script(_SETTLE)(
                keys=[_running_key(user_id), _reserved_key(user_id), spent_key(user_id, self.day)],
                args=[self.slot, tokens],
            )
        except Exception as exc:
            log.warning("could not settle generation %s of user %s: %s", self.slot, user_id, exc)


class _Leases:
    """The live (uncharged) admissions of one event loop, and the task renewing their leases.

    The task runs while there are live admissions and renews all of them in one round trip.
    """

    def __init__(self) -> None:
        self.live: dict[str, Admission] = {}
        self.task: asyncio.Task[None] | None = None
        self.renewing: asyncio.Future[None] | None = None

    def hold(self, admission: Admission) -> None:
        """Keep renewing `admission`'s lease until it is charged."""
        self.live[admission.slot] = admission
        admission._leases = self
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._renew_while_live())

    async def release(self, admission: Admission) -> None:
        """Stop renewing `admission`; wait for a renewal in flight, so that it cannot write
        the slot back after the charge removed it."""
        self.live.pop(admission.slot, None)
        renewing = self.renewing
        if renewing is not None and renewing.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(renewing)

    async def _renew_while_live(self) -> None:
        try:
            while self.live:
                await asyncio.sleep(_lease_seconds() / RENEWALS_PER_LEASE)
                if self.live:
                    await self._renew_once()
        finally:
            if self.task is asyncio.current_task():
                self.task = None  # no reference to the loop is left behind

    async def _renew_once(self) -> None:
        batch = list(self.live.values())
        renewing = self.renewing = asyncio.get_running_loop().create_future()
        try:
            await _renew(batch)
        except Exception as exc:
            log.warning("could not renew %d generation leases: %s", len(batch), exc)
        finally:
            self.renewing = None
            renewing.set_result(None)


# The running event loop's live admissions.
_leases_per_loop: PerLoop[_Leases] = PerLoop(_Leases)


async def _renew(admissions: list[Admission]) -> None:
    """Write the admissions' slots and reservations again with a fresh lease."""
    keys: list[str] = []
    args: list[object] = [time.time() + _lease_seconds(), _lease_seconds()]
    for admission in admissions:
        user_id = admission.user.pk  # type: ignore[attr-defined]
        keys += [_running_key(user_id), _reserved_key(user_id)]
        args += [admission.slot, admission.reserved]
    await get_async_script(_RENEW)(keys=keys, args=args)


def _ledger_tokens(user_id: int, day: str) -> int:
    """The tokens the ledger holds for generations a user started on `day` (UTC)."""
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    total = Generation.objects.filter(
        user_id=user_id, started_at__gte=start, started_at__lt=start + timedelta(days=1)
    ).aggregate(total=Sum(F("prompt_tokens") + F("completion_tokens")))["total"]
    return int(total or 0)


async def _rebuild_spent(user_id: int, day: str) -> None:
    """Create a missing day counter from the ledger (unless another worker just did)."""
    total = await sync_to_async(_ledger_tokens)(user_id, day)
    await get_async_redis().set(spent_key(user_id, day), total, nx=True, ex=SPENT_TTL)


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
    started_at = datetime.now(UTC)
    day = _day(started_at)
    slot = uuid.uuid4().hex
    script = get_async_script(_ADMIT)
    for _ in range(2):
        now = time.time()
        allowed, kind, detail = await script(
            keys=[
                f"usage:rpm:{user_id}:{int(now // 60)}",
                _running_key(user_id),
                _reserved_key(user_id),
                spent_key(user_id, day),
            ],
            args=[
                limits.requests_per_minute,
                limits.concurrent,
                limits.tokens_per_day,
                now,
                slot,
                max(prompt_tokens, 0) + REPLY_RESERVE,
                _lease_seconds(),
            ],
        )
        if kind != "missing":
            break
        await _rebuild_spent(user_id, day)
    else:
        raise Refused("unavailable", 1)  # the counter vanished again as soon as it was built
    if not int(allowed):
        # `detail` is how long the refusal lasts; a spent budget lasts until midnight UTC.
        raise Refused(kind, _seconds_to_midnight() if kind == "quota" else int(detail))
    # Once admitted, `detail` is the number of tokens reserved.
    admission = Admission(
        user=user,
        door=door,
        api_key=api_key,
        slot=slot,
        reserved=int(detail),
        day=day,
        started_at=started_at,
    )
    _leases_per_loop.get().hold(admission)
    return admission


def record_interrupted(
    user_id: int, *, model: str, prompt_tokens: int, completion_tokens: int, started_at: datetime
) -> Generation:
    """A generation whose worker died: its estimated tokens count like any others.

    The ledger row is written first and counted into its day's counter only if that exists
    (otherwise the next admission rebuilds the counter from the ledger, this row included).
    The dead worker's slot and reservation lapse with their lease.
    """
    row = Generation.objects.create(
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
    try:
        get_redis().eval(
            _SPEND, 1, spent_key(user_id, _day(started_at)), prompt_tokens + completion_tokens
        )
    except Exception as exc:
        log.warning("could not count interrupted generation %s: %s", row.pk, exc)
    return row
