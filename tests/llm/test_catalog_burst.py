"""The catalog under a burst: requests that need a connection's row at once share one read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chatsite.redis import get_redis
from llm import catalog
from llm.errors import ModelNotFound
from llm.models import Connection

pytestmark = pytest.mark.django_db(transaction=True)

T = TypeVar("T")


async def row_reads_while(work: Awaitable[T]) -> tuple[T, int]:
    """What `work` answers, and how many single Connection rows the sync thread read."""
    context = CaptureQueriesContext(connection)
    await sync_to_async(context.__enter__)()
    try:
        result = await work
    finally:
        await sync_to_async(context.__exit__)(None, None, None)
    sql = await sync_to_async(lambda: [q["sql"] for q in context.captured_queries])()
    rows = [q for q in sql if '"llm_connection"' in q and '"llm_connection"."id" =' in q]
    return result, len(rows)


async def test_a_burst_on_a_new_catalog_reads_the_connection_row_once(local: Connection) -> None:
    await catalog.load_catalog(refresh=True)  # a new catalog: no row read under it yet
    # As the API door does: the catalog came with the key, so no request waits for Redis.
    catalog.use_prefetched(get_redis().get(catalog.CACHE_KEY))
    burst = asyncio.gather(*(catalog.resolve_connection("llama3.2:latest") for _ in range(20)))
    found, reads = await row_reads_while(burst)
    assert {(entry.name, row.pk) for entry, row in found} == {("llama3.2:latest", local.pk)}
    assert reads == 1  # one per request would be 20
    _, reads = await row_reads_while(catalog.resolve_connection("qwen3:8b"))
    assert reads == 0  # the same catalog: the row is kept


async def test_a_connection_disabled_since_the_catalog_was_read_is_not_found(
    local: Connection,
) -> None:
    await catalog.load_catalog(refresh=True)
    catalog.use_prefetched(get_redis().get(catalog.CACHE_KEY))
    await Connection.objects.filter(pk=local.pk).aupdate(enabled=False)  # no signal: stale
    results = await asyncio.gather(
        *(catalog.resolve_connection("llama3.2:latest") for _ in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(result, ModelNotFound) for result in results)
