"""The meter enforces effective limits in its one admission: the monthly budget (rolling over
at the month's start, UTC), an API key's own daily budget, and where the person stands after
each answer (what the API's x-ratelimit-* headers show)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async

from accounts.models import ApiKey, PersonLimits, User
from chatsite.redis import get_redis
from tests.conftest import make_user
from usage.services import REPLY_RESERVE, Refused, admit, month_spent_key

pytestmark = pytest.mark.django_db(transaction=True)

LAST_SECOND_OF_JANUARY = datetime(2031, 1, 31, 23, 59, 59, tzinfo=UTC)
FIRST_OF_FEBRUARY = datetime(2031, 2, 1, 0, 0, 0, tzinfo=UTC)


@pytest.fixture
async def person() -> User:
    return await sync_to_async(make_user)("mia")


async def own_limits(user: User, **values: object) -> None:
    """The person's own limits; everything not named is unlimited."""
    defaults = {"tokens_per_day": 0, "tokens_per_month": 0, "requests_per_minute": 0}
    await PersonLimits.objects.aupdate_or_create(
        user=user, defaults={**defaults, "concurrent": 0, **values}
    )


async def spend(user: User, tokens: int, **admit_args: object) -> None:
    admission = await admit(user, door="web", **admit_args)
    await admission.charge(model="m", prompt_tokens=tokens)


async def test_the_monthly_budget_rolls_over_at_the_months_start_utc(person: User) -> None:
    await own_limits(person, tokens_per_month=1000)
    await spend(person, 1000, at=LAST_SECOND_OF_JANUARY)
    with pytest.raises(Refused) as refused:
        await admit(person, door="web", at=LAST_SECOND_OF_JANUARY)
    assert refused.value.kind == "month" and refused.value.is_quota
    assert refused.value.retry_after == 2  # one second to February, rounded up
    message = refused.value.message
    assert "monthly token quota" in message and "1,000 tokens per month" in message
    assert "2031-02-01" in message and "set for you" in message
    # February has its own budget: January's spending does not count.
    february = await admit(person, door="web", at=FIRST_OF_FEBRUARY)
    assert february.reserved == REPLY_RESERVE and february.month == "203102"
    await february.charge(model="m", prompt_tokens=10)


async def test_a_missing_month_counter_is_rebuilt_from_the_ledger(person: User) -> None:
    await own_limits(person, tokens_per_month=1000)
    await spend(person, 900, at=LAST_SECOND_OF_JANUARY)
    await sync_to_async(get_redis().flushdb)()  # Redis lost its data
    admission = await admit(person, door="web", at=LAST_SECOND_OF_JANUARY)
    assert admission.reserved == 100  # only what the ledger says is left
    assert get_redis().get(month_spent_key(person.pk, "203101")) == "900"
    await admission.charge(model="m", prompt_tokens=100)
    with pytest.raises(Refused):
        await admit(person, door="web", at=LAST_SECOND_OF_JANUARY)


async def test_a_keys_own_budget_stops_the_key_and_not_its_owner(person: User) -> None:
    await own_limits(person, tokens_per_day=10_000)
    key, _ = await sync_to_async(ApiKey.issue)(person, "ci", tokens_per_day=300)
    other, _ = await sync_to_async(ApiKey.issue)(person, "laptop")
    first = await admit(person, door="api", api_key=key, prompt_tokens=100)
    assert first.reserved == 300  # no more than the key has left
    with pytest.raises(Refused) as refused:  # its reservation holds the key's whole budget
        await admit(person, door="api", api_key=key)
    assert refused.value.kind == "key_quota"
    assert "API key's daily token quota" in refused.value.message
    assert "300 tokens per day" in refused.value.message
    through_other = await admit(person, door="api", api_key=other, prompt_tokens=100)
    assert through_other.reserved == 100 + REPLY_RESERVE
    await first.charge(model="m", prompt_tokens=100, completion_tokens=50)
    second = await admit(person, door="api", api_key=key)
    assert second.reserved == 150  # what the key's day has left after the real count
    for admission in (through_other, second):
        await admission.charge(model="m")


async def test_a_key_budget_never_widens_its_owners(person: User) -> None:
    await own_limits(person, tokens_per_day=200)
    key, _ = await sync_to_async(ApiKey.issue)(person, "ci", tokens_per_day=100_000)
    await spend(person, 200)  # in the browser
    with pytest.raises(Refused) as refused:
        await admit(person, door="api", api_key=key)
    assert refused.value.kind == "quota"


async def test_the_headroom_counts_requests_and_the_tightest_budget(person: User) -> None:
    await own_limits(person, requests_per_minute=5, tokens_per_day=5000, tokens_per_month=3000)
    first = await admit(person, door="web", prompt_tokens=88)
    second = await admit(person, door="web", prompt_tokens=88)
    assert (first.headroom.requests.limit, first.headroom.requests.remaining) == (5, 4)
    assert second.headroom.requests.remaining == 3
    assert 0 < first.headroom.requests.reset_seconds <= 60
    # The month has less left than the day: it is the budget shown.
    assert first.headroom.tokens.limit == 3000
    assert first.headroom.tokens.remaining == 3000 - 600
    assert second.headroom.tokens.remaining == 3000 - 1200
    for admission in (first, second):
        await admission.charge(model="m")


async def test_without_limits_there_is_no_headroom_to_show(person: User) -> None:
    await own_limits(person)
    admission = await admit(person, door="web")
    assert admission.headroom.requests is None and admission.headroom.tokens is None
    await admission.charge(model="m")


async def test_refusals_name_the_limit_and_where_it_comes_from(person: User) -> None:
    await own_limits(person, requests_per_minute=1)
    await spend(person, 1)
    with pytest.raises(Refused) as rate:
        await admit(person, door="web")
    assert "at most 1 requests per minute (set for you)" in rate.value.message
    assert rate.value.headroom.requests.remaining == 0
    await own_limits(person, concurrent=1)
    running = await admit(person, door="web")
    with pytest.raises(Refused) as busy:
        await admit(person, door="web")
    assert "at most 1 (set for you)" in busy.value.message
    await running.charge(model="m")


async def test_a_limit_changed_by_an_admin_applies_to_the_next_admission(person: User) -> None:
    await own_limits(person, tokens_per_day=100)
    await spend(person, 100)
    with pytest.raises(Refused):
        await admit(person, door="web")
    await own_limits(person, tokens_per_day=1000)
    admission = await admit(person, door="web")
    assert admission.reserved == REPLY_RESERVE
    await admission.charge(model="m")
