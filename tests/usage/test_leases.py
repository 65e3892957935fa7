"""Concurrency slots and token reservations are leases that their worker renews."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from accounts.models import User
from chatsite.redis import get_redis
from tests import live
from tests.conftest import make_user
from usage.services import Refused, admit

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 1.0  # renewed every quarter: only a worker stalled for a whole second loses it
# 1000 tokens a day and two generations at once: a reservation of 300 + 512 leaves 188.
BUDGET = {
    "member": {"requests_per_minute": 0, "concurrent": 2, "tokens_per_day": 1000},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}
NO_BUDGET = {**BUDGET, "member": {**BUDGET["member"], "tokens_per_day": 0}}

# A worker process that admits one generation, says how much it reserved, and keeps running.
WORKER = """
import asyncio, sys
from types import SimpleNamespace

import django

django.setup()
from usage.services import admit


async def main() -> None:
    admission = await admit(SimpleNamespace(pk=int(sys.argv[1]), role="member"), door="web",
                            prompt_tokens=300)
    print(admission.reserved, flush=True)
    await asyncio.sleep(3600)


asyncio.run(main())
"""


@pytest.fixture
async def person() -> User:
    return await sync_to_async(make_user)("mia")


@pytest.fixture
def worker(person: User) -> Iterator[subprocess.Popen[str]]:
    """Another worker process, running a generation of `person` with the same meter."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.live_settings",
        "DATABASE_URL": live.test_database_url(),
        "USAGE_SLOT_LEASE_SECONDS": str(LEASE),
        "QUOTA_MEMBER_RPM": "0",
        "QUOTA_MEMBER_CONCURRENT": "2",
        "QUOTA_MEMBER_TOKENS_PER_DAY": "1000",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(person.pk)],
        cwd=live.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield process
    process.kill()
    process.wait()


def _slots(user: User) -> tuple[int, int]:
    """How many slots and reservations Redis holds for `user`."""
    client = get_redis()
    return client.zcard(f"usage:running:{user.pk}"), client.hlen(f"usage:reserved:{user.pk}")


@override_settings(QUOTAS=NO_BUDGET, USAGE_SLOT_LEASE_SECONDS=LEASE)
async def test_a_running_generation_keeps_its_slot_beyond_the_lease(person: User) -> None:
    first = await admit(person, door="web")
    second = await admit(person, door="web")
    await asyncio.sleep(2 * LEASE)  # renewed all along
    with pytest.raises(Refused) as refused:
        await admit(person, door="web")
    assert refused.value.kind == "concurrency"
    await first.charge(model="m")
    third = await admit(person, door="web")
    for admission in (second, third):  # no renewal outlives the test's loop
        await admission.charge(model="m")


@override_settings(QUOTAS=BUDGET, USAGE_SLOT_LEASE_SECONDS=LEASE)
async def test_a_killed_worker_frees_its_slot_and_reservation_within_the_lease(
    person: User, worker: subprocess.Popen[str]
) -> None:
    assert int(await asyncio.to_thread(worker.stdout.readline)) == 812  # type: ignore[union-attr]
    await asyncio.sleep(2 * LEASE)  # the worker renews its lease
    mine = await admit(person, door="web", prompt_tokens=300)
    assert mine.reserved == 188  # the other worker's reservation still counts
    await mine.charge(model="m")

    worker.kill()  # SIGKILL: the worker gives nothing back
    worker.wait()
    await asyncio.sleep(LEASE + 0.1)
    first = await admit(person, door="web", prompt_tokens=300)
    assert first.reserved == 812  # its reservation lapsed with its lease
    second = await admit(person, door="web", prompt_tokens=300)  # and its slot too
    assert second.reserved == 188
    for admission in (first, second):
        await admission.charge(model="m")


@override_settings(QUOTAS=BUDGET, USAGE_SLOT_LEASE_SECONDS=LEASE)
async def test_renewal_writes_back_slots_and_reservations_redis_lost(person: User) -> None:
    running = await admit(person, door="api", prompt_tokens=300)
    await sync_to_async(get_redis().flushdb)()  # a Redis restarted without its data
    await asyncio.sleep(LEASE / 2)  # at least one renewal
    assert await sync_to_async(_slots)(person) == (1, 1)
    second = await admit(person, door="api", prompt_tokens=300)
    assert second.reserved == 188
    with pytest.raises(Refused) as refused:
        await admit(person, door="api")
    assert refused.value.is_quota
    await running.charge(model="m")
    await second.charge(model="m")


@override_settings(QUOTAS=BUDGET, USAGE_SLOT_LEASE_SECONDS=LEASE)
async def test_a_charged_generation_is_not_renewed(person: User) -> None:
    first = await admit(person, door="web", prompt_tokens=300)
    second = await admit(person, door="web", prompt_tokens=300)
    await first.charge(model="m", prompt_tokens=300)
    await asyncio.sleep(LEASE / 2)  # renewals of the second one
    assert await sync_to_async(_slots)(person) == (1, 1)
    await second.charge(model="m", prompt_tokens=300)
    await asyncio.sleep(LEASE / 2)
    assert await sync_to_async(_slots)(person) == (0, 0)
    third = await admit(person, door="web", prompt_tokens=1000)
    assert third.reserved == 400
    await third.charge(model="m")
