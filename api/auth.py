"""Who is calling: a personal API key from `Authorization: Bearer <key>`.

One query per request, by digest, joined to the owner; no process cache, so a revoked or
expired key (or a deactivated owner) is refused by every worker at once.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import ApiKey, User
from api.errors import model_not_found, unauthorized

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


async def authenticate(request: HttpRequest, *, openai: bool) -> ApiKey:
    """The live key of an active, approved owner; raises a 401 ApiError otherwise."""
    secret = presented_key(request)
    if secret is None or len(secret) > 200:
        raise unauthorized(openai, secret)
    # Digests are unique: fetch the one row and judge it here. The same rules as
    # `ApiKey.objects.live()`, without the cost of compiling its filters on every request.
    key = await (
        ApiKey.objects.select_related("user").filter(digest=ApiKey.digest_of(secret)).afirst()
    )
    if key is None or not key.is_live or not _may_call(key.user):
        raise unauthorized(openai, secret)
    await _touch(key)
    return key


def _may_call(user: User) -> bool:
    return user.is_active and user.role in (User.Role.ADMIN, User.Role.MEMBER)


async def _touch(key: ApiKey) -> None:
    now = timezone.now()
    cutoff = now - LAST_USED_PRECISION
    if key.last_used_at is not None and key.last_used_at > cutoff:
        return
    # Conditional, so concurrent requests of the same key write once between them.
    await (
        ApiKey.objects.filter(pk=key.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))
        .aupdate(last_used_at=now)
    )
    key.last_used_at = now


def check_model(key: ApiKey, model: str, *, openai: bool) -> None:
    """A model outside the key's list looks exactly like a model that does not exist."""
    if not key.allows_model(model):
        raise model_not_found(model, openai)
