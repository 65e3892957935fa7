"""API keys by digest, cached in Redis so the API's hot path needs no database query.

Every worker shares the cache, so a change is seen everywhere at once: saving or deleting a
key, or changing its owner, replaces the entry with a tombstone (no longer usable) or a
short "read the database" marker (still usable). Entries are written with NX, so a lookup
that read the database just before a change cannot put the old record back over either.

The database work of a burst is shared: the keys that concurrent requests miss in the cache
are read together, and the first uses of a minute recorded together, each in one query per
round instead of one per request (a burst of programs with new keys queued behind a hundred
queries in the one sync thread, bench/README.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import ApiKey, User
from chatsite.loops import PerLoop
from chatsite.redis import get_async_redis, get_redis

TTL = 300
TOMBSTONE = "-"
# After a change that leaves a key usable: read the database, cache nothing, for a few
# seconds, so a lookup that read the old row just before the change cannot cache it.
UNCACHED = "~"
UNCACHED_SECONDS = 5


def _cache_key(digest: str) -> str:
    return f"apikey:{digest}"


async def find(
    digest: str, *, use_window: int, also_get: tuple[str, ...] = ()
) -> tuple[ApiKey | None, bool, list[str | None]]:
    """The key with this digest (its `user` attached), whether this is its first use in the
    last `use_window` seconds (to keep `last_used_at` current without a write per call),
    and the values of the Redis keys `also_get`, read in the same round trip.
    """
    client = get_async_redis()
    pipe = client.pipeline(transaction=False)
    pipe.get(_cache_key(digest))
    pipe.set(f"apikey:used:{digest}", 1, ex=use_window, nx=True)
    for name in also_get:
        pipe.get(name)
    raw, first_use, *also = await pipe.execute()
    if raw == TOMBSTONE:
        return None, False, also
    if raw and raw != UNCACHED:
        return _from_record(json.loads(raw)), bool(first_use), also
    key = await _key_reads.get().ask((digest, raw != UNCACHED))
    return key, bool(first_use), also


async def record_use(pk: int) -> None:
    """Set a key's `last_used_at` to now, in one query with the other keys used meanwhile."""
    await _use_writes.get().ask(pk)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Items per query: well under the bound variables SQLite allows in one statement.
BATCH = 500


class _Batches(Generic[K, V]):
    """One event loop's calls of a database function, served in batches: whoever asks while a
    batch runs is served by the next one, with everyone else who asked meanwhile.

    `run` takes the items asked for and answers {item: value} (None for an item missing);
    it runs in the sync thread, as the ORM's async methods do.
    """

    def __init__(self, run: Callable[[list[K]], dict[K, V]]) -> None:
        self._run = sync_to_async(run)
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._worker: asyncio.Task[None] | None = None

    async def ask(self, item: K) -> V | None:
        """`item`'s value, from the next batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._waiting.setdefault(item, []).append(future)
        if self._worker is None:
            self._worker = loop.create_task(self._serve())
        return await future

    async def _serve(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    found = await self._run(list(batch))
                except BaseException as exc:
                    for futures in batch.values():
                        for future in futures:
                            _fail(future, exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for item, futures in batch.items():
                    for future in futures:
                        if not future.done():  # its request may have been cancelled
                            future.set_result(found.get(item))
        finally:
            self._worker = None


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()


def _read_keys(asked: list[tuple[str, bool]]) -> dict[tuple[str, bool], ApiKey]:
    """Keys by (digest, whether to cache what is read); found ones and tombstones for the
    missing are cached with NX (never over a change's marker) in one round trip."""
    digests = sorted({digest for digest, _ in asked})
    found: dict[str, ApiKey] = {}
    for start in range(0, len(digests), BATCH):
        rows = ApiKey.objects.select_related("user").filter(digest__in=digests[start:][:BATCH])
        found.update((key.digest, key) for key in rows)
    pipe = get_redis().pipeline(transaction=False)
    for digest in {digest for digest, cache in asked if cache}:
        key = found.get(digest)
        value = json.dumps(_record(key)) if key is not None else TOMBSTONE
        pipe.set(_cache_key(digest), value, ex=TTL, nx=True)
    pipe.execute()
    return {item: found[item[0]] for item in asked if item[0] in found}


def _write_uses(pks: list[int]) -> dict[int, None]:
    now = timezone.now()
    for start in range(0, len(pks), BATCH):
        ApiKey.objects.filter(pk__in=pks[start:][:BATCH]).update(last_used_at=now)
    return {}


_key_reads: PerLoop[_Batches[tuple[str, bool], ApiKey]] = PerLoop(lambda: _Batches(_read_keys))
_use_writes: PerLoop[_Batches[int, None]] = PerLoop(lambda: _Batches(_write_uses))


def forget(digests: list[str], *, usable: bool) -> None:
    """After a change: unusable keys become tombstones, usable ones go uncached briefly."""
    if not digests:
        return
    pipe = get_redis().pipeline(transaction=False)
    for digest in digests:
        if usable:
            pipe.set(_cache_key(digest), UNCACHED, ex=UNCACHED_SECONDS)
        else:
            pipe.set(_cache_key(digest), TOMBSTONE, ex=TTL)
    pipe.execute()


def _record(key: ApiKey) -> dict:
    user = key.user
    return {
        "id": key.pk,
        "name": key.name,
        "last_four": key.last_four,
        "allowed_models": key.allowed_models,
        "tokens_per_day": key.tokens_per_day,
        "created_at": _iso(key.created_at),
        "last_used_at": _iso(key.last_used_at),
        "expires_at": _iso(key.expires_at),
        "revoked_at": _iso(key.revoked_at),
        "user": {
            "id": user.pk,
            "username": user.username,
            "role": user.role,
            "is_active": user.is_active,
        },
    }


def _from_record(record: dict) -> ApiKey:
    user = User(
        pk=record["user"]["id"],
        username=record["user"]["username"],
        role=record["user"]["role"],
        is_active=record["user"]["is_active"],
    )
    key = ApiKey(
        pk=record["id"],
        user=user,
        name=record["name"],
        last_four=record["last_four"],
        allowed_models=record["allowed_models"],
        tokens_per_day=record.get("tokens_per_day"),  # absent in records cached before it
        created_at=_parse(record["created_at"]),
        last_used_at=_parse(record["last_used_at"]),
        expires_at=_parse(record["expires_at"]),
        revoked_at=_parse(record["revoked_at"]),
    )
    key._state.adding = False
    key._state.db = "default"
    return key


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None
