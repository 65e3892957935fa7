from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from accounts.models import User
from chatsite.redis import get_async_redis
from tests.conftest import make_user
from usage.models import Generation
from usage.services import Refused, admit

pytestmark = pytest.mark.django_db(transaction=True)

TIGHT = {
    "member": {"requests_per_minute": 3, "concurrent": 2, "tokens_per_day": 100},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}
# The same without a token budget, where only rate and concurrency can refuse.
NO_BUDGET = {**TIGHT, "member": {**TIGHT["member"], "tokens_per_day": 0}}


@pytest.fixture
async def person() -> User:
    return await sync_to_async(make_user)("mia")


@override_settings(QUOTAS=TIGHT)
async def test_charging_writes_one_ledger_row_and_frees_the_slot(person: User) -> None:
    admission = await admit(person, door="web")
    row = await admission.charge(model="m", connection="c", prompt_tokens=5, completion_tokens=7)
    assert row is not None and row.total_tokens == 12 and row.door == "web"
    assert await admission.charge(model="m") is None  # a second charge is a no-op
    assert await Generation.objects.acount() == 1


@override_settings(QUOTAS=NO_BUDGET)
async def test_concurrent_generations_beyond_the_limit_are_refused(person: User) -> None:
    first = await admit(person, door="api")
    second = await admit(person, door="api")
    with pytest.raises(Refused) as refused:
        await admit(person, door="api")
    assert refused.value.kind == "concurrency" and not refused.value.is_quota
    assert refused.value.retry_after == 1
    await first.charge(model="m")
    third = await admit(person, door="api")  # the slot the first gave back
    assert len({first.slot, second.slot, third.slot}) == 3
    for admission in (second, third):
        await admission.charge(model="m")


@override_settings(QUOTAS=NO_BUDGET)
async def test_requests_per_minute_are_counted_across_doors(person: User) -> None:
    for door in ("web", "api", "web"):
        admission = await admit(person, door=door)
        await admission.charge(model="m")
    with pytest.raises(Refused) as refused:
        await admit(person, door="api")
    assert refused.value.kind == "rate"
    assert 1 <= refused.value.retry_after <= 60


@override_settings(QUOTAS=NO_BUDGET)
async def test_the_requests_of_a_minute_are_forgotten_after_it(person: User) -> None:
    admission = await admit(person, door="api")
    await admission.charge(model="m")
    redis = get_async_redis()
    counters = [key async for key in redis.scan_iter(f"usage:rpm:{person.pk}:*")]
    assert len(counters) == 1
    assert 0 < await redis.ttl(counters[0]) <= 60


@override_settings(QUOTAS=TIGHT)
async def test_a_spent_daily_budget_is_a_quota_refusal(person: User) -> None:
    admission = await admit(person, door="web")
    await admission.charge(model="m", prompt_tokens=60, completion_tokens=40)
    with pytest.raises(Refused) as refused:
        await admit(person, door="web")
    assert refused.value.is_quota
    assert "daily token quota" in refused.value.message


@override_settings(QUOTAS=NO_BUDGET)
async def test_admission_is_atomic_under_a_burst(person: User) -> None:
    results = await asyncio.gather(
        *(admit(person, door="api") for _ in range(10)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, Exception)]
    assert len(admitted) == 2 and admitted[0].slot != admitted[1].slot
    refused = [r for r in results if r not in admitted]
    assert all(isinstance(r, Refused) and r.kind == "concurrency" for r in refused)
    for admission in admitted:
        await admission.charge(model="m")


@override_settings(QUOTAS=TIGHT)
async def test_admins_have_no_limits_by_default() -> None:
    boss = await sync_to_async(make_user)("ada", role=User.Role.ADMIN)
    # More at once than a member's concurrency, more this minute than a member's rate,
    # and more tokens than a member's day: none of it is refused.
    running = [await admit(boss, door="api", prompt_tokens=100) for _ in range(10)]
    assert len({admission.slot for admission in running}) == 10
    for admission in running:
        await admission.charge(model="m", prompt_tokens=100, completion_tokens=100)
    after = await admit(boss, door="api")
    await after.charge(model="m")
    assert await Generation.objects.filter(user=boss).acount() == 11


@override_settings(QUOTAS=TIGHT)
async def test_a_spent_budget_says_to_retry_after_midnight_utc(person: User) -> None:
    from datetime import UTC, datetime, timedelta

    admission = await admit(person, door="web")
    await admission.charge(model="m", prompt_tokens=100)
    with pytest.raises(Refused) as refused:
        await admit(person, door="web")
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert abs(refused.value.retry_after - (midnight - now).total_seconds()) <= 2


BUDGET = {**TIGHT, "member": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 1000}}


@override_settings(QUOTAS=BUDGET)
async def test_generations_running_at_once_cannot_overspend_the_budget(person: User) -> None:
    first = await admit(person, door="api", prompt_tokens=300)  # 300 + a reply's worth
    second = await admit(person, door="api", prompt_tokens=300)  # only what was left
    assert (first.reserved, second.reserved) == (812, 188)
    with pytest.raises(Refused) as refused:
        await admit(person, door="api", prompt_tokens=1)
    assert refused.value.is_quota
    # Charging puts the real counts in place of the reservations.
    await first.charge(model="m", prompt_tokens=300, completion_tokens=20)
    await second.charge(model="m", prompt_tokens=300, completion_tokens=20)
    third = await admit(person, door="api", prompt_tokens=10)
    assert third.reserved == 1000 - 640
    await third.charge(model="m")
