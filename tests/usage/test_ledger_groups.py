"""The ledger's group commit: charges that come while one is being written go together in
the next write, each caller still gets its own row (or its own error), and the rollups
still equal the ledger."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from chatsite.group_commit import GroupCommit
from tests.conftest import make_user
from tests.usage.test_rollups import UNLIMITED, assert_rollups_equal_the_ledger
from usage import rollups
from usage.models import Generation
from usage.services import admit

pytestmark = pytest.mark.django_db(transaction=True)
on_the_loop = pytest.mark.asyncio(loop_scope="session")


class Writer:
    """A `write_many` that holds its first group until released, and keeps every group."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.groups.append(list(items))
        if len(self.groups) == 1:
            self.in_flight.set()
            self.release.wait(5)
        return [ValueError(f"no {i}") if i == 13 else i * 10 for i in items]


async def until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 5)


@on_the_loop
async def test_items_that_come_while_a_write_is_in_flight_go_in_the_next_one_together() -> None:
    writer = Writer()
    commit = GroupCommit(writer)
    first = asyncio.ensure_future(commit.submit(1))
    await until(writer.in_flight)  # the first goes at once, alone
    later = [asyncio.ensure_future(commit.submit(i)) for i in (2, 3, 13, 4)]
    await asyncio.sleep(0.05)
    writer.release.set()
    assert await first == 10
    results = await asyncio.gather(*later, return_exceptions=True)
    assert results[:2] == [20, 30] and results[3] == 40
    assert isinstance(results[2], ValueError) and str(results[2]) == "no 13"  # its own error
    assert writer.groups == [[1], [2, 3, 13, 4]]


@on_the_loop
async def test_a_cancelled_caller_leaves_its_item_to_be_written() -> None:
    writer = Writer()
    commit = GroupCommit(writer)
    first = asyncio.ensure_future(commit.submit(1))
    await until(writer.in_flight)
    gone = asyncio.ensure_future(commit.submit(2))
    await asyncio.sleep(0)
    gone.cancel()
    writer.release.set()
    assert await first == 10
    with pytest.raises(asyncio.CancelledError):
        await gone
    await commit.task  # type: ignore[misc]
    assert writer.groups == [[1], [2]]


@on_the_loop
async def test_a_failed_group_gives_every_caller_the_error_and_the_next_goes_on() -> None:
    calls = []

    def fails_once(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("database gone")
        return items

    commit = GroupCommit(fails_once)
    results = await asyncio.gather(*(commit.submit(i) for i in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["database gone"] * 3
    assert await commit.submit(7) == 7


def _row(user_id: int, **fields: object) -> dict[str, object]:
    return {
        "user_id": user_id, "door": "web", "model": "llama3", "prompt_tokens": 5,
        "completion_tokens": 7, "status": "ok", "started_at": datetime.now(UTC),
        "duration_ms": 100, "ttft_ms": 30, **fields,
    }  # fmt: skip


def test_a_group_of_rows_is_written_and_counted_in_one_transaction() -> None:
    mia, bob = make_user("mia"), make_user("bob")
    rows = [_row(mia.pk), _row(mia.pk, status="stopped", ttft_ms=None), _row(bob.pk)]
    written = rollups.record_many(rows)
    assert all(isinstance(row, Generation) and row.pk for row in written)
    assert Generation.objects.count() == 3
    assert_rollups_equal_the_ledger()


def test_a_bad_row_in_a_group_costs_only_itself() -> None:
    mia = make_user("mia")
    rows = [_row(mia.pk), _row(mia.pk, prompt_tokens=-1), _row(mia.pk, completion_tokens=9)]
    first, bad, last = rollups.record_many(rows)
    assert isinstance(first, Generation) and isinstance(last, Generation)
    assert isinstance(bad, Exception)
    assert sorted(Generation.objects.values_list("completion_tokens", flat=True)) == [7, 9]
    assert_rollups_equal_the_ledger()


@override_settings(QUOTAS=UNLIMITED)
@on_the_loop
async def test_concurrent_charges_are_all_in_the_ledger_and_the_rollups() -> None:
    people = await sync_to_async(lambda: [make_user(f"p{i}") for i in range(3)])()
    admissions = [await admit(people[i % 3], door="web") for i in range(30)]
    rows = await asyncio.gather(
        *(
            admission.charge(model="llama3", prompt_tokens=i, completion_tokens=2, ttft_ms=i)
            for i, admission in enumerate(admissions)
        )
    )
    assert len({row.pk for row in rows}) == 30  # type: ignore[union-attr]
    assert [row.prompt_tokens for row in rows] == list(range(30))  # type: ignore[union-attr]
    assert await Generation.objects.acount() == 30
    await sync_to_async(assert_rollups_equal_the_ledger)()
