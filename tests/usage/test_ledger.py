"""The ledger is the truth about tokens spent: Redis losing its data gives no budget back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import override_settings

from accounts.models import User
from chatsite.embedded import start_redis, stop
from chatsite.redis import get_redis
from tests.conftest import make_user
from usage.models import Generation
from usage.services import Refused, admit, record_interrupted, spent_key

pytestmark = pytest.mark.django_db(transaction=True)

TIGHT = {
    "member": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 100},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}


@pytest.fixture
async def person() -> User:
    return await sync_to_async(make_user)("mia")


async def _lose_redis_data() -> None:
    await sync_to_async(get_redis().flushdb)()


def _spent(user: User) -> str | None:
    return get_redis().get(spent_key(user.pk))


@override_settings(QUOTAS=TIGHT)
async def test_a_spent_budget_stays_spent_when_redis_loses_its_data(person: User) -> None:
    admission = await admit(person, door="web")
    await admission.charge(model="m", prompt_tokens=60, completion_tokens=40)
    await _lose_redis_data()
    with pytest.raises(Refused) as refused:
        await admit(person, door="web")
    assert refused.value.is_quota


@override_settings(QUOTAS=TIGHT)
async def test_the_counter_is_rebuilt_from_todays_ledger_only(person: User) -> None:
    now = datetime.now(UTC)
    for started_at, tokens in ((now - timedelta(days=1), 90), (now, 30)):
        await Generation.objects.acreate(
            user=person, door="web", model="m", status="ok",
            prompt_tokens=tokens, started_at=started_at,
        )  # fmt: skip
    admission = await admit(person, door="web")
    assert admission.reserved == 70
    await admission.charge(model="m", prompt_tokens=5)
    assert await sync_to_async(_spent)(person) == "35"


@override_settings(QUOTAS=TIGHT)
async def test_a_new_day_counter_exists_at_zero(person: User) -> None:
    await admit(person, door="web")
    assert await sync_to_async(_spent)(person) == "0"


@override_settings(QUOTAS=TIGHT)
async def test_a_charge_does_not_start_a_partial_counter(person: User) -> None:
    first = await admit(person, door="web")
    await first.charge(model="m", prompt_tokens=60)
    second = await admit(person, door="web")
    await _lose_redis_data()
    await second.charge(model="m", prompt_tokens=30)
    assert await sync_to_async(_spent)(person) is None
    third = await admit(person, door="web")  # the ledger says 90 of 100 are spent
    assert third.reserved == 10


@override_settings(QUOTAS=TIGHT)
async def test_an_interrupted_generation_does_not_start_a_partial_counter(person: User) -> None:
    first = await admit(person, door="web")
    await first.charge(model="m", prompt_tokens=60)
    await _lose_redis_data()
    await sync_to_async(record_interrupted)(
        person.pk, model="m", prompt_tokens=10, completion_tokens=20, started_at=datetime.now(UTC)
    )
    assert await sync_to_async(_spent)(person) is None
    second = await admit(person, door="web")
    assert second.reserved == 10


@override_settings(QUOTAS=TIGHT)
async def test_an_interrupted_generation_counts_into_an_existing_counter(person: User) -> None:
    first = await admit(person, door="web")
    await first.charge(model="m", prompt_tokens=60)
    await sync_to_async(record_interrupted)(
        person.pk, model="m", prompt_tokens=10, completion_tokens=20, started_at=datetime.now(UTC)
    )
    assert await sync_to_async(_spent)(person) == "90"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[object, str]]:
    """A Redis of this test's own (which it may stop), as the embedded launcher starts it."""
    process, url = start_redis(tmp_path)
    yield process, url
    stop(process)


@override_settings(QUOTAS=TIGHT)
async def test_charging_with_redis_unreachable_still_writes_the_ledger_row(
    person: User, private_redis: tuple[object, str]
) -> None:
    process, url = private_redis
    with override_settings(REDIS_URL=url):  # this test's event loop gets its own client
        admission = await admit(person, door="web")
        stop(process)  # type: ignore[arg-type]
        row = await admission.charge(model="m", prompt_tokens=7, completion_tokens=3)
    assert row is not None
    assert await Generation.objects.filter(user=person, prompt_tokens=7).acount() == 1


def test_the_embedded_redis_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    process, url = start_redis(tmp_path)
    try:
        redis.Redis.from_url(url).set("stopped", "kept")
        stop(process)
        process, url = start_redis(tmp_path)
        client = redis.Redis.from_url(url)
        assert client.get("stopped") == b"kept"
        client.set("killed", "kept")
        process.kill()  # SIGKILL: no chance to save anything on the way out
        process.wait()
        process, url = start_redis(tmp_path)
        assert redis.Redis.from_url(url).get("killed") == b"kept"
    finally:
        stop(process)
