"""The key cache under a burst: keys missing from Redis and first uses share their queries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import keycache
from accounts.models import ApiKey, User
from chatsite.redis import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


@asynccontextmanager
async def queries() -> AsyncIterator[list[str]]:
    """The SQL run in the sync thread (where the ORM's async methods run) inside the block."""
    captured: list[str] = []
    context = CaptureQueriesContext(connection)
    await sync_to_async(context.__enter__)()
    try:
        yield captured
    finally:
        await sync_to_async(context.__exit__)(None, None, None)
        captured += await sync_to_async(lambda: [q["sql"] for q in context.captured_queries])()


def issue_keys(count: int) -> list[tuple[ApiKey, str]]:
    owner = User.objects.create(username="programs", role=User.Role.MEMBER)
    return [ApiKey.issue(owner, f"program {i}") for i in range(count)]


def key_reads(sql: list[str]) -> list[str]:
    return [q for q in sql if q.startswith("SELECT") and '"accounts_apikey"' in q]


async def find(secret: str) -> ApiKey | None:
    key, _, _ = await keycache.find(ApiKey.digest_of(secret), use_window=60)
    return key


async def test_keys_missing_from_the_cache_at_once_are_read_together() -> None:
    keys = await sync_to_async(issue_keys)(30)
    async with queries() as sql:
        found = await asyncio.gather(*(find(secret) for _, secret in keys))
    assert [key.pk for key in found] == [key.pk for key, _ in keys]
    assert all(key.user.username == "programs" for key in found)
    # One query per request would be 30; the first batch may go out before the rest arrive.
    assert 1 <= len(key_reads(sql)) <= 2
    cached = get_redis().mget([f"apikey:{key.digest}" for key, _ in keys])
    assert all(value and value != keycache.TOMBSTONE for value in cached)
    async with queries() as sql:  # now from the cache
        assert [(await find(secret)).pk for _, secret in keys[:3]] == [k.pk for k, _ in keys[:3]]
    assert key_reads(sql) == []


async def test_a_burst_mixing_known_unknown_and_repeated_keys_gets_each_its_answer() -> None:
    (key, secret), (other, other_secret) = await sync_to_async(issue_keys)(2)
    asked = [secret, "cs-unknown-1", other_secret, secret, "cs-unknown-2", secret]
    found = await asyncio.gather(*(find(s) for s in asked))
    assert [k.pk if k else None for k in found] == [key.pk, None, other.pk, key.pk, None, key.pk]
    unknown = get_redis().get(f"apikey:{ApiKey.digest_of('cs-unknown-1')}")
    assert unknown == keycache.TOMBSTONE  # refused from the cache from now on


async def test_a_key_just_changed_is_read_but_not_cached() -> None:
    ((key, secret),) = await sync_to_async(issue_keys)(1)
    await sync_to_async(keycache.forget)([key.digest], usable=True)  # as saving a key does
    found = await asyncio.gather(find(secret), find(secret))
    assert [k.pk for k in found] == [key.pk, key.pk]
    assert get_redis().get(f"apikey:{key.digest}") == keycache.UNCACHED


async def test_a_cancelled_request_leaves_the_others_of_its_batch_their_keys() -> None:
    keys = await sync_to_async(issue_keys)(5)
    tasks = [asyncio.create_task(find(secret)) for _, secret in keys]
    await asyncio.sleep(0)  # all five are waiting for the batch
    tasks[2].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r.pk for i, r in enumerate(results) if i != 2] == [
        key.pk for i, (key, _) in enumerate(keys) if i != 2
    ]


async def test_first_uses_at_once_are_recorded_in_one_update() -> None:
    keys = [key for key, _ in await sync_to_async(issue_keys)(30)]
    async with queries() as sql:
        await asyncio.gather(*(keycache.record_use(key.pk) for key in keys))
    updates = [q for q in sql if q.startswith("UPDATE") and '"accounts_apikey"' in q]
    assert 1 <= len(updates) <= 2  # not one per key
    used = await sync_to_async(list)(ApiKey.objects.values_list("last_used_at", flat=True))
    assert len(used) == 30 and all(used)
