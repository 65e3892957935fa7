"""Who is calling: a personal API key from `Authorization: Bearer <key>`.

Looked up by digest through the shared Redis cache of `accounts.keycache` (the database on
a miss); no process cache, so a revoked or expired key (or a deactivated owner) is refused
by every worker at once.
"""

from __future__ import annotations

from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone

from accounts import keycache
from accounts.models import ApiKey
from api.formats import WireFormat
from llm import catalog
from usage import limits

# `last_used_at` is for people reading the keys page: a minute's precision is plenty and
# spares the hot path a write per request.
LAST_USED_PRECISION = timedelta(minutes=1)


def presented_key(request: HttpRequest) -> str | None:
    """The bearer token of the request, if any (header name and scheme in any case)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def authenticate(request: HttpRequest, wire: WireFormat) -> ApiKey:
    """The live key of an active, approved owner; raises a 401 ApiError otherwise."""
    secret = presented_key(request)
    if secret is None or len(secret) > 200:
        raise wire.unauthorized(secret)
    # The model catalog comes along in the same round trip: nearly every call needs it next.
    key, first_use, (catalog_raw,) = await keycache.find(
        ApiKey.digest_of(secret),
        use_window=int(LAST_USED_PRECISION.total_seconds()),
        also_get=(catalog.CACHE_KEY,),
    )
    catalog.use_prefetched(catalog_raw)
    if key is None or not key.is_live or not key.user.may_use_api:
        raise wire.unauthorized(secret)
    if first_use:
        # One write a minute per key, decided in Redis so concurrent requests agree.
        key.last_used_at = timezone.now()
        await keycache.record_use(key.pk)  # with the other keys' first uses of a burst
    return key


async def check_model(key: ApiKey, model: str, wire: WireFormat) -> None:
    """A model outside the key's list or its owner's model access looks exactly like a model
    that does not exist."""
    if not (await limits.effective_limits_async(key.user)).allows(model, key):
        raise wire.model_not_found(model)
