"""Admit a generation before it runs and charge it afterwards: the one meter for both doors.

Admission is atomic across workers (a Lua script in Redis): requests per minute, concurrent
generations, the daily and monthly token budgets and an API key's own daily budget are
checked against the person's effective limits (`usage.limits`), and a request, a concurrency
slot and a token reservation taken, in one step. The same step checks that the limits were
read under the current limits version, so an admin's change applies to the next admission.
`Admission.charge()` writes the ledger row, puts the real token count in place of the
reservation and gives the slot back; call it exactly once, in a `finally`. The ledger rows of
a worker's charges that come while one is being written go in one transaction with the next
(`chatsite.group_commit`): under load, fewer trips to the database thread.

A slot and its reservation are a lease of `USAGE_SLOT_LEASE_SECONDS` that the worker holding
them renews while the generation runs (one round trip per event loop for all its
generations). A worker that died stops renewing: its slot and reservation lapse within one
lease. Renewal writes them again in full, so a Redis that lost its data has the running
generations' slots and reservations back within one renewal.

The ledger (`Generation`) is the truth about tokens spent: a day's, a month's or a key's
counter in Redis that is missing (a new day, or a Redis that lost its data) is rebuilt from it
(or its daily rollups) before admitting.
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

from chatsite.group_commit import GroupCommit
from chatsite.loops import PerLoop
from chatsite.redis import COUNT_IN_WINDOW, get_async_redis, get_async_script, get_redis
from usage import limits, rollups
from usage.headroom import (
    QUOTA_KINDS,
    Headroom,
    headroom,
    refusal_message,
    seconds_to_next_day,
    seconds_to_next_month,
)
from usage.limits import Effective
from usage.models import Generation

log = logging.getLogger(__name__)

# KEYS: 1 per-minute counter, 2 running generations (a sorted set: slot -> lease expiry),
# 3 their reservations (a hash: slot -> tokens), tokens spent 4 today, 5 this month and
# 6 today through the API key, 7 the limits version.
# ARGV: 1 rpm limit, 2 concurrency limit, token limits (0 = none) 3 daily, 4 monthly and
# 5 the key's daily, 6 now, 7 slot id, 8 tokens to reserve, 9 lease seconds, 10 the limits
# version the limits were read under, 11 how the key's slot ids end ('' without a key).
# Answers {admitted, kind, detail, requests this minute, tokens used (spent and reserved) of
# the daily, monthly and key budgets}. Kind 'stale' (detail: the current version): the
# limits changed since they were read; 'missing' (detail: 1 daily, 2 monthly, 3 key): that
# spent counter must first be rebuilt from the ledger. Neither counts anything.
_ADMIT = (
    COUNT_IN_WINDOW
    + """
local version = redis.call('GET', KEYS[7]) or ''
if version ~= ARGV[10] then return {0, 'stale', version, 0, 0, 0, 0} end
local rpm_limit = tonumber(ARGV[1])
local concurrency_limit = tonumber(ARGV[2])
local budgets = {tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])}
local kinds = {'quota', 'month', 'key_quota'}
local now = tonumber(ARGV[6])
local reserve = tonumber(ARGV[8])
local lease = tonumber(ARGV[9])
local suffix = ARGV[11]
-- Slots whose worker stopped renewing them lapse, and their reservations with them.
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, slot in ipairs(lapsed) do redis.call('HDEL', KEYS[3], slot) end
end
local used = {0, 0, 0}
local budgeted = false
for i = 1, 3 do
  if budgets[i] > 0 then
    local spent = redis.call('GET', KEYS[i + 3])
    if not spent then return {0, 'missing', i, 0, 0, 0, 0} end
    used[i] = tonumber(spent)
    budgeted = true
  end
end
if budgeted then
  local reserved = redis.call('HGETALL', KEYS[3])
  for j = 1, #reserved, 2 do
    local tokens = tonumber(reserved[j + 1])
    used[1] = used[1] + tokens
    used[2] = used[2] + tokens
    if suffix ~= '' and string.sub(reserved[j], -#suffix) == suffix then
      used[3] = used[3] + tokens
    end
  end
end
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, 3 do
  if budgets[i] > 0 then
    if used[i] >= budgets[i] then return {0, kinds[i], 0, count, used[1], used[2], used[3]} end
    -- Reserve at most what is left: the next generation finds the budget taken.
    reserve = math.min(reserve, budgets[i] - used[i])
  end
end
if concurrency_limit > 0 and redis.call('ZCARD', KEYS[2]) >= concurrency_limit then
  return {0, 'concurrency', 1, count, used[1], used[2], used[3]}
end
count = count_in_window(KEYS[1], 60)
if rpm_limit > 0 and count > rpm_limit then
  return {0, 'rate', redis.call('TTL', KEYS[1]), count, used[1], used[2], used[3]}
end
redis.call('ZADD', KEYS[2], now + lease, ARGV[7])
redis.call('HSET', KEYS[3], ARGV[7], reserve)
redis.call('EXPIRE', KEYS[2], math.ceil(lease))
redis.call('EXPIRE', KEYS[3], math.ceil(lease))
local key_reserve = suffix ~= '' and reserve or 0
return {1, 'ok', reserve, count, used[1] + reserve, used[2] + reserve, used[3] + key_reserve}
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

# KEYS: running generations, their reservations, then the spent counters the generation
# counts into (its day's, its month's, its key's day's). ARGV: slot id, tokens spent.
# A missing counter is left missing: the next admission rebuilds it from the ledger, which
# already holds this generation's row.
_SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[2]) end
end
return 1
"""

# KEYS: spent counters. ARGV: tokens. Counted only into the counters that exist.
_SPEND = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 1
"""

# Reserved per generation for the reply, on top of its prompt, until the real count is known.
REPLY_RESERVE = 512

# A day's spent counter outlives its day, for generations charged after midnight; a
# month's likewise.
SPENT_TTL = 2 * 86400
MONTH_SPENT_TTL = 33 * 86400

# Admission attempts: a missing counter or a change of limits each cost one more.
ADMIT_ATTEMPTS = 5

# Renewals per lease: a renewal or two may fail (a Redis blip) before a lease lapses.
RENEWALS_PER_LEASE = 4

UNAVAILABLE = "The usage meter cannot be reached right now. Try again in a moment."


class Refused(Exception):
    """The meter refused a generation. `kind`: quota (the day's tokens), month (the month's),
    key_quota (the API key's day), concurrency, rate, or unavailable. The message names the
    limit and when it resets; `headroom` is where the person stands (for the API's headers).
    """

    def __init__(
        self,
        kind: str,
        retry_after: float,
        message: str = UNAVAILABLE,
        headroom: Headroom | None = None,
    ) -> None:
        self.kind = kind
        self.retry_after = max(int(retry_after), 1)
        self.headroom = headroom or Headroom()
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)

    @property
    def is_quota(self) -> bool:
        """A spent budget: retrying soon will not help."""
        return self.kind in QUOTA_KINDS


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


def _month(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m")


def _today() -> str:
    return _day(datetime.now(UTC))


def spent_key(user_id: int, day: str | None = None) -> str:
    """The Redis counter of the tokens a user spent on `day` (today by default, UTC)."""
    return f"usage:tokens:{user_id}:{day or _today()}"


def month_spent_key(user_id: int, month: str) -> str:
    """The Redis counter of the tokens a user spent in `month` ("YYYYMM", UTC)."""
    return f"usage:month:{user_id}:{month}"


def key_spent_key(key_id: int, day: str) -> str:
    """The Redis counter of the tokens spent through an API key on `day` ("YYYYMMDD", UTC)."""
    return f"usage:key:{key_id}:{day}"


def _key_suffix(api_key: object | None) -> str:
    """How the slot ids of generations through `api_key` end ('' without a key)."""
    return f":k{api_key.pk}" if api_key is not None else ""  # type: ignore[attr-defined]


def _running_key(user_id: int) -> str:
    return f"usage:running:{user_id}"


def _reserved_key(user_id: int) -> str:
    return f"usage:reserved:{user_id}"


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
    month: str = field(default_factory=lambda: _month(datetime.now(UTC)))
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Where the person stands after this admission (the API's x-ratelimit-* headers).
    headroom: Headroom = field(default_factory=Headroom)
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
        ttft_ms: int | None = None,
    ) -> Generation | None:
        """Record the generation in the ledger and give the concurrency slot back.

        The ledger row (with its daily rollup) is written first: it is the truth, and it is
        written even when Redis cannot be reached (the slot then lapses with its lease).
        `ttft_ms`: time to the first token as the door saw it; None when none came.
        """
        if self._charged:
            return None
        self._charged = True
        prompt_tokens, completion_tokens = max(prompt_tokens, 0), max(completion_tokens, 0)
        try:
            return await ledger_writers.get().submit(
                {
                    "user_id": self.user.pk,  # type: ignore[attr-defined]
                    "api_key": self.api_key,
                    "door": self.door,
                    "model": model[:200],
                    "connection": connection[:100],
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "usage_source": usage_source,
                    "status": status,
                    "error": error[:500],
                    "started_at": self.started_at,
                    "duration_ms": int((time.monotonic() - self._started) * 1000),
                    "ttft_ms": None if ttft_ms is None else max(int(ttft_ms), 0),
                }
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
                keys=[
                    _running_key(user_id),
                    _reserved_key(user_id),
                    *_counters(user_id, self.api_key, self.day, self.month),
                ],
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

# The running event loop's ledger writes, grouped.
ledger_writers: PerLoop[GroupCommit[dict, Generation]] = PerLoop(
    lambda: GroupCommit(rollups.record_many)
)


async def _renew(admissions: list[Admission]) -> None:
    """Write the admissions' slots and reservations again with a fresh lease."""
    keys: list[str] = []
    args: list[object] = [time.time() + _lease_seconds(), _lease_seconds()]
    for admission in admissions:
        user_id = admission.user.pk  # type: ignore[attr-defined]
        keys += [_running_key(user_id), _reserved_key(user_id)]
        args += [admission.slot, admission.reserved]
    await get_async_script(_RENEW)(keys=keys, args=args)


def _counters(user_id: int, api_key: object | None, day: str, month: str) -> list[str]:
    """The spent counters a generation counts into: its day's, its month's, its key's day's."""
    counters = [spent_key(user_id, day), month_spent_key(user_id, month)]
    if api_key is not None:
        counters.append(key_spent_key(api_key.pk, day))  # type: ignore[attr-defined]
    return counters


def _ledger_tokens(user_id: int, day: str, *, api_key_id: int | None = None) -> int:
    """The tokens the ledger holds for generations a user (or one of their keys) started on
    `day` (UTC)."""
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    rows = Generation.objects.filter(
        user_id=user_id, started_at__gte=start, started_at__lt=start + timedelta(days=1)
    )
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    total = rows.aggregate(total=Sum(F("prompt_tokens") + F("completion_tokens")))["total"]
    return int(total or 0)


async def _rebuild_spent(
    which: int, user_id: int, api_key: object | None, day: str, month: str
) -> None:
    """Create a missing counter (1 the day's, 2 the month's, 3 the key's day's) from the
    ledger, unless another worker just did."""
    if which == 1:
        counter, ttl = spent_key(user_id, day), SPENT_TTL
        total = await sync_to_async(_ledger_tokens)(user_id, day)
    elif which == 2:
        counter, ttl = month_spent_key(user_id, month), MONTH_SPENT_TTL
        total = await sync_to_async(rollups.tokens_in_month)(user_id, month)
    else:
        key_id = api_key.pk  # type: ignore[attr-defined]
        counter, ttl = key_spent_key(key_id, day), SPENT_TTL
        total = await sync_to_async(_ledger_tokens)(user_id, day, api_key_id=key_id)
    await get_async_redis().set(counter, total, nx=True, ex=ttl)


async def admit(
    user: object,
    *,
    door: str,
    api_key: object | None = None,
    prompt_tokens: int = 0,
    at: datetime | None = None,
) -> Admission:
    """Let a generation start, or raise `Refused` naming the limit and how long to wait.

    It reserves `prompt_tokens` plus a reply's worth against the budgets until `charge()`
    puts the real count in their place, so concurrent generations cannot all start on the
    last few tokens of a budget. `at` is the moment whose UTC day and month the generation
    counts against (now by default); rates and leases always follow the clock.
    """
    started_at = at or datetime.now(UTC)
    day, month = _day(started_at), _month(started_at)
    user_id = user.pk  # type: ignore[attr-defined]
    key_budget = int(getattr(api_key, "tokens_per_day", None) or 0)
    slot = uuid.uuid4().hex + _key_suffix(api_key)
    # Without a key, its counter's place holds one that is never read (its budget is 0).
    counters = [*_counters(user_id, api_key, day, month), key_spent_key(0, day)][:3]
    effective = await limits.effective_limits_async(user)  # type: ignore[arg-type]
    for _ in range(ADMIT_ATTEMPTS):
        now = time.time()
        answer = await get_async_script(_ADMIT)(
            keys=[
                f"usage:rpm:{user_id}:{int(now // 60)}",
                _running_key(user_id),
                _reserved_key(user_id),
                *counters,
                limits.VERSION_KEY,
            ],
            args=[
                *_limit_args(effective, key_budget),
                now,
                slot,
                max(prompt_tokens, 0) + REPLY_RESERVE,
                _lease_seconds(),
                effective.version,
                _key_suffix(api_key),
            ],
        )
        allowed, kind, detail = answer[:3]
        if kind == "missing":
            await _rebuild_spent(int(detail), user_id, api_key, day, month)
        elif kind == "stale":
            effective = await limits.effective_limits_async(user, version=str(detail))  # type: ignore[arg-type]
        else:
            break
    else:
        raise Refused("unavailable", 1)  # counters or limits kept changing under it
    standing = headroom(
        effective,
        key_budget,
        requests_this_minute=int(answer[3]),
        used=(int(answer[4]), int(answer[5]), int(answer[6])),
        now=now,
        at=started_at,
    )
    if not int(allowed):
        raise _refusal(kind, int(detail), effective, key_budget, standing, started_at)
    # Once admitted, `detail` is the number of tokens reserved.
    admission = Admission(
        user=user,
        door=door,
        api_key=api_key,
        slot=slot,
        reserved=int(detail),
        day=day,
        month=month,
        started_at=started_at,
        headroom=standing,
    )
    _leases_per_loop.get().hold(admission)
    return admission


def _limit_args(effective: Effective, key_budget: int) -> list[int]:
    """The limits as the admission script takes them (0 = none)."""
    return [
        effective.requests_per_minute.value,
        effective.concurrent.value,
        effective.tokens_per_day.value,
        effective.tokens_per_month.value,
        key_budget,
    ]


def _refusal(
    kind: str, detail: int, effective: Effective, key_budget: int, standing: Headroom, at: datetime
) -> Refused:
    """The refusal of the meter's answer: `detail` is how long a rate or concurrency refusal
    lasts; a spent budget lasts until its day or month ends (UTC)."""
    if kind == "month":
        retry_after = seconds_to_next_month(at) + 1
    elif kind in QUOTA_KINDS:
        retry_after = seconds_to_next_day(at) + 1
    else:
        retry_after = detail
    message = refusal_message(kind, effective, key_budget, int(retry_after), at)
    return Refused(kind, retry_after, message, standing)


def record_interrupted(
    user_id: int, *, model: str, prompt_tokens: int, completion_tokens: int, started_at: datetime
) -> Generation:
    """A generation whose worker died: its estimated tokens count like any others.

    The ledger row is written first and counted into its day's and month's counters only
    where they exist (otherwise the next admission rebuilds them from the ledger, this row
    included).
    The dead worker's slot and reservation lapse with their lease.
    """
    row = rollups.record(
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
        counters = _counters(user_id, None, _day(started_at), _month(started_at))
        get_redis().eval(_SPEND, len(counters), *counters, prompt_tokens + completion_tokens)
    except Exception as exc:
        log.warning("could not count interrupted generation %s: %s", row.pk, exc)
    return row
