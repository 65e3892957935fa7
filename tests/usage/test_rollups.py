"""The daily rollups always equal the ledger summed, whatever was charged and how."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

from accounts.models import ApiKey, User
from tests.conftest import make_user
from usage import rollups, ttft
from usage.models import DailyModelUsage, DailyPersonUsage, DailyUsage, Generation
from usage.services import admit, record_interrupted

pytestmark = pytest.mark.django_db(transaction=True)

UNLIMITED = {
    role: {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0}
    for role in ("admin", "member")
}
STATUS_COLUMN = {"ok": "ok", "stopped": "stopped", "interrupted": "interrupted", "error": "failed"}


PER_PERSON = ("user_id", "model", "door", "api_key_id")
PER_MODEL = ("model", "door")
PER_PERSON_AND_DOOR = ("user_id", "door", "api_key_id")


def ledger_summed_by_hand(fields: tuple[str, ...] = PER_PERSON) -> dict[tuple, dict[str, int]]:
    """The ledger summed row by row in Python, per day and `fields`: what every rollup row
    must hold (its non-zero counters)."""
    sums: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in Generation.objects.all():
        day = row.started_at.astimezone(UTC).date()
        counters = sums[(day, *(getattr(row, name) for name in fields))]
        counters["requests"] += 1
        counters["prompt_tokens"] += row.prompt_tokens
        counters["completion_tokens"] += row.completion_tokens
        counters["duration_ms"] += row.duration_ms
        counters[STATUS_COLUMN[row.status]] += 1
        if row.ttft_ms is not None:
            counters["ttft_count"] += 1
            counters["ttft_ms"] += row.ttft_ms
            counters[ttft.field_for(row.ttft_ms)] += 1
    return {
        identity: {name: value for name, value in counters.items() if value}
        for identity, counters in sums.items()
    }


def rollups_as_stored(
    rollup: type = DailyUsage, fields: tuple[str, ...] = PER_PERSON
) -> dict[tuple, dict[str, int]]:
    """Every row of a rollup: its non-zero counters, by its identity."""
    names = ["requests", "prompt_tokens", "completion_tokens", "duration_ms", "ttft_count",
             "ttft_ms", "ok", "stopped", "interrupted", "failed", *ttft.FIELDS]  # fmt: skip
    stored = {}
    for row in rollup.objects.all():
        identity = (row.day, *(getattr(row, name) for name in fields))
        assert identity not in stored, f"two rollup rows for {identity}"
        stored[identity] = {name: getattr(row, name) for name in names if getattr(row, name)}
    return stored


def assert_rollups_equal_the_ledger() -> None:
    assert rollups_as_stored() == ledger_summed_by_hand()
    assert rollups_as_stored(DailyModelUsage, PER_MODEL) == ledger_summed_by_hand(PER_MODEL)
    assert rollups_as_stored(DailyPersonUsage, PER_PERSON_AND_DOOR) == ledger_summed_by_hand(
        PER_PERSON_AND_DOOR
    )


@pytest.fixture
async def people() -> tuple[User, User, ApiKey, ApiKey]:
    def create() -> tuple[User, User, ApiKey, ApiKey]:
        mia, bob = make_user("mia"), make_user("bob")
        return mia, bob, ApiKey.issue(mia, "laptop")[0], ApiKey.issue(mia, "ci")[0]

    return await sync_to_async(create)()


async def _charge(user: User, door: str, key: ApiKey | None = None, **charge: object) -> None:
    admission = await admit(user, door=door, api_key=key)
    await admission.charge(**charge)


@override_settings(QUOTAS=UNLIMITED)
async def test_rollups_equal_the_ledger_after_mixed_charges(people) -> None:  # type: ignore[no-untyped-def]
    mia, bob, laptop, ci = people
    await _charge(mia, "web", model="llama3", prompt_tokens=10, completion_tokens=20, ttft_ms=40)
    await _charge(mia, "web", model="llama3", prompt_tokens=1, completion_tokens=2, ttft_ms=900)
    await _charge(mia, "web", model="qwen3", completion_tokens=5, status="stopped", ttft_ms=70000)
    await _charge(mia, "api", laptop, model="llama3", prompt_tokens=7, ttft_ms=120)
    await _charge(mia, "api", laptop, model="llama3", status="error", error="upstream down")
    await _charge(mia, "api", ci, model="llama3", prompt_tokens=3, completion_tokens=4, ttft_ms=0)
    await _charge(bob, "web", model="llama3", prompt_tokens=100, completion_tokens=50, ttft_ms=300)
    now = datetime.now(UTC)
    for user, started_at in ((mia, now), (mia, now - timedelta(days=1)), (bob, now)):
        await sync_to_async(record_interrupted)(
            user.pk, model="llama3", prompt_tokens=8, completion_tokens=9, started_at=started_at
        )
    await sync_to_async(assert_rollups_equal_the_ledger)()
    stored = await sync_to_async(rollups_as_stored)()
    assert len(stored) == 6  # mia: web x2 models, laptop, ci, web yesterday; bob: web
    today = (now.date(), mia.pk, "llama3", "web", None)
    assert stored[today]["requests"] == 3 and stored[today]["interrupted"] == 1
    assert stored[today]["ttft_count"] == 2 and stored[today]["ttft_ms"] == 940


@override_settings(QUOTAS=UNLIMITED)
async def test_a_rebuild_from_the_ledger_gives_the_same_rollups(people) -> None:  # type: ignore[no-untyped-def]
    mia, bob, laptop, _ = people
    await _charge(mia, "web", model="llama3", prompt_tokens=10, completion_tokens=20, ttft_ms=55)
    await _charge(mia, "api", laptop, model="gpt-4o", prompt_tokens=5, status="stopped")
    await _charge(bob, "api", None, model="gpt-4o", prompt_tokens=5, ttft_ms=12345)
    kept = await sync_to_async(rollups_as_stored)()
    kept_per_model = await sync_to_async(rollups_as_stored)(DailyModelUsage, PER_MODEL)
    counts = await sync_to_async(rollups.rebuild)()
    assert counts == {"DailyUsage": 3, "DailyModelUsage": 2, "DailyPersonUsage": 3}
    assert await sync_to_async(rollups_as_stored)() == kept
    assert await sync_to_async(rollups_as_stored)(DailyModelUsage, PER_MODEL) == kept_per_model


def test_tokens_on_a_day_and_in_a_month_come_from_the_rollups() -> None:
    mia, bob = make_user("mia"), make_user("bob")
    moments = {
        datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC): 1,
        datetime(2026, 2, 1, 0, 0, 0, tzinfo=UTC): 10,
        datetime(2026, 2, 14, 12, 0, 0, tzinfo=UTC): 100,
        datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC): 1000,
        datetime(2026, 3, 1, 0, 0, 0, tzinfo=UTC): 10000,
    }
    for started_at, tokens in moments.items():
        record_interrupted(
            mia.pk, model="m", prompt_tokens=tokens, completion_tokens=0, started_at=started_at
        )
    record_interrupted(bob.pk, model="m", prompt_tokens=5, completion_tokens=5,
                       started_at=datetime(2026, 2, 14, tzinfo=UTC))  # fmt: skip
    assert rollups.tokens_in_month(mia.pk, "202601") == 1
    assert rollups.tokens_in_month(mia.pk, "202602") == 1110
    assert rollups.tokens_in_month(mia.pk, "202603") == 10000
    assert rollups.tokens_in_month(bob.pk, "202602") == 10
    assert rollups.tokens_on_day(mia.pk, "20260201") == 10
    assert rollups.tokens_on_day(mia.pk, "20260228") == 1000
    assert rollups.tokens_on_day(mia.pk, "20260227") == 0
    assert rollups.next_month(date(2026, 12, 31)) == date(2027, 1, 1)


def test_concurrent_charges_of_the_same_rollup_all_count() -> None:
    """Threads with their own database connections race to create the same rollup row."""
    mia = make_user("mia")
    started_at = datetime.now(UTC)
    errors: list[BaseException] = []

    def charge_five() -> None:
        try:
            for _ in range(5):
                rollups.record(user_id=mia.pk, door="web", model="m", status="ok",
                               prompt_tokens=3, started_at=started_at, ttft_ms=250)  # fmt: skip
        except BaseException as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=charge_five) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for rollup in (DailyUsage, DailyModelUsage, DailyPersonUsage):
        (row,) = rollup.objects.all()
        assert (row.requests, row.prompt_tokens, row.ttft_count) == (40, 120, 40)
        assert getattr(row, ttft.field_for(250)) == 40


def test_deleting_an_api_key_keeps_its_rollups() -> None:
    mia = make_user("mia")
    key, _ = ApiKey.issue(mia, "old")
    other, _ = ApiKey.issue(mia, "other")
    now = datetime.now(UTC)
    for api_key in (key, other):
        rollups.record(user=mia, api_key=api_key, door="api", model="m", status="ok",
                       prompt_tokens=4, started_at=now)  # fmt: skip
    ids = sorted([key.pk, other.pk])
    key.delete()
    other.delete()  # a second deletion on the same day and model must not collide either
    assert sorted(DailyUsage.objects.values_list("api_key_id", flat=True)) == ids
    assert rollups.tokens_on_day(mia.pk, now.strftime("%Y%m%d")) == 8


def test_the_migration_sums_the_existing_ledger_into_rollups() -> None:
    mia = make_user("mia")
    key, _ = ApiKey.issue(mia, "laptop")
    executor = MigrationExecutor(connection)
    executor.migrate([("usage", "0001_initial")])
    executor.loader.build_graph()
    old_apps = executor.loader.project_state([("usage", "0001_initial")]).apps
    old_generation = old_apps.get_model("usage", "Generation")
    day = datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    for status, door, api_key_id, tokens in (
        ("ok", "web", None, 10), ("error", "web", None, 1), ("ok", "api", key.pk, 100),
    ):  # fmt: skip
        old_generation.objects.create(
            user_id=mia.pk, door=door, api_key_id=api_key_id, model="m", status=status,
            prompt_tokens=tokens, completion_tokens=tokens, started_at=day, duration_ms=7,
        )  # fmt: skip
    old_generation.objects.create(
        user_id=mia.pk, door="web", model="m", status="ok", prompt_tokens=5,
        started_at=day + timedelta(hours=1), duration_ms=1,
    )  # fmt: skip
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert_rollups_equal_the_ledger()
    web = DailyUsage.objects.get(day=date(2026, 3, 5), door="web")
    assert (web.requests, web.ok, web.failed, web.prompt_tokens, web.duration_ms) == (
        2, 1, 1, 11, 14,
    )  # fmt: skip
    assert rollups.tokens_on_day(mia.pk, "20260306") == 5


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0] * 16, None),
        ([1] + [0] * 15, 25),  # one value in 0-50: the middle of the bucket
        ([0, 2] + [0] * 14, 75),
        ([0] * 15 + [3], 30000),  # slower than the last bound: at least that
        ([1, 0, 0, 0, 0, 0, 0, 0, 1] + [0] * 7, 50),  # half reached at the top of bucket 0
    ],
)
def test_the_median_is_read_from_the_histogram(counts: list[int], expected: int | None) -> None:
    assert ttft.median(counts) == expected


def test_each_time_falls_in_one_bucket() -> None:
    assert ttft.field_for(0) == "ttft_00"
    assert ttft.field_for(50) == "ttft_00"
    assert ttft.field_for(51) == "ttft_01"
    assert ttft.field_for(30000) == "ttft_14"
    assert ttft.field_for(30001) == "ttft_15"
    assert len(ttft.FIELDS) == 16
