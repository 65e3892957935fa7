"""API keys by digest, cached in Redis so the API's hot path needs no database query.

Every worker shares the cache, so a change is seen everywhere at once: saving or deleting a
key, or changing its owner, replaces the entry with a tombstone (no longer usable) or a
short "read the database" marker (still usable). Entries are written with NX, so a lookup
that read the database just before a change cannot put the old record back over either.
"""

from __future__ import annotations

import json
from datetime import datetime

from django.utils.dateparse import parse_datetime

from accounts.models import ApiKey, User
from usage.redis import get_async_redis, get_redis

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
    key = await ApiKey.objects.select_related("user").filter(digest=digest).afirst()
    if raw != UNCACHED:
        value = json.dumps(_record(key)) if key is not None else TOMBSTONE
        await client.set(_cache_key(digest), value, ex=TTL, nx=True)
    return key, bool(first_use), also


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
