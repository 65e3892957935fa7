"""A person's effective limits, and where each one comes from.

Each limit is the person's own (set by an admin) where one is set, else the most generous
of their groups' values (0, unlimited, beats any number), else their role's default from
the environment (`settings.QUOTAS`). Model access is the person's own list of patterns if
set, else the union of their groups' lists, else every model. An API key may narrow its
owner's models (its `allowed_models`) and add its own daily token budget; it never widens
anything.

Every process caches a person's effective limits for at most CACHE_SECONDS. Each result
carries the limits version it was read under: a value in Redis replaced after every change
of limits, groups, membership or role. The meter's admission compares it in its one Lua
call and reads the limits again when they changed, so a change applies to the next
admission on every worker; elsewhere (model access) a change shows within CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey, GroupLimits, Limits, PersonLimits, User
from chatsite.loops import PerLoop
from chatsite.redis import get_redis

log = logging.getLogger(__name__)

VERSION_KEY = "usage:limits:version"
CACHE_SECONDS = 1.0
LIMIT_FIELDS = Limits.LIMIT_FIELDS

# Where a value comes from.
PERSON = "person"
ROLE_DEFAULT = "role default"
EVERY_MODEL = "every model"


@dataclass(frozen=True)
class Limit:
    """One effective limit: its value (0 = unlimited) and where it comes from."""

    value: int
    source: str

    @property
    def in_words(self) -> str:
        """The source as a refusal message says it."""
        if self.source == PERSON:
            return "set for you"
        if self.source == ROLE_DEFAULT:
            return "your role's default"
        return self.source


@dataclass(frozen=True)
class Effective:
    """A person's effective limits and model access, with the limits version read."""

    tokens_per_day: Limit
    tokens_per_month: Limit
    requests_per_minute: Limit
    concurrent: Limit
    models: tuple[str, ...] = ()  # fnmatch patterns; empty: every model
    models_source: str = EVERY_MODEL
    version: str = ""

    def allows(self, model: str, api_key: ApiKey | None = None) -> bool:
        """Whether `model` may be used (through `api_key`, which may narrow the choice)."""
        if api_key is not None and not api_key.allows_model(model):
            return False
        return not self.models or any(matches(model, pattern) for pattern in self.models)

    def allowed(self, names: Iterable[str], api_key: ApiKey | None = None) -> list[str]:
        """The names among `names` that may be used, in their order."""
        return [name for name in names if self.allows(name, api_key)]

    def labelled(self) -> list[tuple[str, Limit]]:
        """Each limit with its label, for the pages."""
        return [
            ("Tokens per day", self.tokens_per_day),
            ("Tokens per month", self.tokens_per_month),
            ("Requests per minute", self.requests_per_minute),
            ("Generations at once", self.concurrent),
        ]


def matches(model: str, pattern: str) -> bool:
    """fnmatch (case-sensitive); a pattern without a tag also matches the `:latest` tag."""
    if fnmatch.fnmatchcase(model, pattern):
        return True
    bare = model.removesuffix(":latest")
    return ":" not in pattern and bare != model and fnmatch.fnmatchcase(bare, pattern)


def role_defaults(role: str) -> dict[str, int]:
    """The role's limits from the environment (QUOTA_* variables; 0 = unlimited)."""
    table = settings.QUOTAS.get(role) or settings.QUOTAS["member"]
    return {name: int(table.get(name, 0)) for name in LIMIT_FIELDS}


def combine(
    role: str,
    person: PersonLimits | None,
    groups: Iterable[GroupLimits],
    *,
    version: str = "",
) -> Effective:
    """The effective limits from the person's own, their groups' and their role's."""
    ranked = sorted(groups, key=lambda limits: limits.group.name)
    defaults = role_defaults(role)
    values = {name: _pick(name, person, ranked, defaults[name]) for name in LIMIT_FIELDS}
    models, models_source = _models(person, ranked)
    return Effective(**values, models=models, models_source=models_source, version=version)


def _pick(name: str, person: PersonLimits | None, groups: list[GroupLimits], default: int) -> Limit:
    own = getattr(person, name, None) if person is not None else None
    if own is not None:
        return Limit(own, PERSON)
    best: Limit | None = None
    for limits in groups:
        value = getattr(limits, name)
        if value is not None and (best is None or _more_generous(value, best.value)):
            best = Limit(value, f"group {limits.group.name}")
    return best or Limit(default, ROLE_DEFAULT)


def _more_generous(value: int, than: int) -> bool:
    return than != 0 and (value == 0 or value > than)


def _models(person: PersonLimits | None, groups: list[GroupLimits]) -> tuple[tuple[str, ...], str]:
    if person is not None and person.models:
        return tuple(person.models), PERSON
    listing = [limits for limits in groups if limits.models]
    if not listing:
        return (), EVERY_MODEL
    patterns = dict.fromkeys(pattern for limits in listing for pattern in limits.models)
    names = ", ".join(limits.group.name for limits in listing)
    return tuple(patterns), f"group{'s' if len(listing) > 1 else ''} {names}"


def resolve(user: User) -> Effective:
    """The effective limits of `user` read from the database now (two queries, no cache)."""
    version = current_version()
    found = User.objects.select_related("limits").filter(pk=user.pk).first()
    role = found.role if found is not None else getattr(user, "role", User.Role.MEMBER)
    person = getattr(found, "limits", None) if found is not None else None
    groups = GroupLimits.objects.filter(group__user=user.pk).select_related("group")
    return combine(role, person, groups, version=version)


# user id -> (monotonic expiry, effective limits)
_cache: dict[int, tuple[float, Effective]] = {}
_CACHE_PRUNE_AT = 4096


def _cached(user_id: int) -> Effective | None:
    found = _cache.get(user_id)
    if found is None or found[0] <= time.monotonic():
        return None
    return found[1]


def _remember(user_id: int, effective: Effective) -> None:
    now = time.monotonic()
    if len(_cache) >= _CACHE_PRUNE_AT:
        for stale in [uid for uid, (expiry, _) in list(_cache.items()) if expiry <= now]:
            _cache.pop(stale, None)
    _cache[user_id] = (now + CACHE_SECONDS, effective)


def effective_limits(user: User) -> Effective:
    """`user`'s effective limits, cached in this process for at most CACHE_SECONDS."""
    found = _cached(user.pk)
    if found is None:
        found = _resolve_and_remember(user)
    return found


def _resolve_and_remember(user: User) -> Effective:
    """Read the limits and cache them, unless read inside a transaction: what it sees may
    be uncommitted or rolled back, and must not reach other requests."""
    effective = resolve(user)
    if not transaction.get_connection().in_atomic_block:
        _remember(user.pk, effective)
    return effective


def may_use_model(user: User, model: str, api_key: ApiKey | None = None) -> bool:
    """Whether `user` (calling through `api_key`, if given) may use `model`."""
    return effective_limits(user).allows(model, api_key)


# The running loop's reads in flight, by user id: a burst of one person's requests shares one.
_reads: PerLoop[dict[int, asyncio.Task[Effective]]] = PerLoop(dict)


async def effective_limits_async(user: User, *, version: str | None = None) -> Effective:
    """`user`'s effective limits, cached as `effective_limits`; with `version`, read again
    unless the answer was read under that limits version (the meter found its copy stale)."""
    found = _cached(user.pk)
    if found is not None and (version is None or found.version == version):
        return found
    for _ in range(2):  # a read already in flight may predate the change
        found = await _shared_read(user)
        if version is None or found.version == version:
            break
    return found  # type: ignore[return-value]


async def _shared_read(user: User) -> Effective:
    reads = _reads.get()
    task = reads.get(user.pk)
    if task is None:
        task = asyncio.get_running_loop().create_task(_read(user))
        reads[user.pk] = task
        task.add_done_callback(lambda done: _forget_read(reads, user.pk, done))
    return await asyncio.shield(task)


def _forget_read(
    reads: dict[int, asyncio.Task[Effective]], user_id: int, done: asyncio.Task
) -> None:
    if reads.get(user_id) is done:
        del reads[user_id]


async def _read(user: User) -> Effective:
    return await sync_to_async(_resolve_and_remember)(user)


def current_version() -> str:
    """The limits version in Redis ("" before the first change, or when Redis cannot be
    reached: an admission then finds the copy stale and reads the limits again)."""
    try:
        return get_redis().get(VERSION_KEY) or ""
    except redis.RedisError:
        return ""


def limits_changed() -> None:
    """After a change of limits, groups, membership or role: this process forgets its copies
    now, and every worker reads limits again once the change is committed."""
    _cache.clear()
    transaction.on_commit(_publish_change)


def _publish_change() -> None:
    _cache.clear()
    try:
        get_redis().set(VERSION_KEY, uuid.uuid4().hex)
    except redis.RedisError as exc:
        # Other workers' copies still expire within CACHE_SECONDS.
        log.warning("could not publish a change of limits: %s", exc)


@receiver(post_save, sender=GroupLimits)
@receiver(post_delete, sender=GroupLimits)
@receiver(post_save, sender=PersonLimits)
@receiver(post_delete, sender=PersonLimits)
@receiver(post_delete, sender=Group)
def _limits_saved(sender: type, **kwargs: object) -> None:
    limits_changed()


@receiver(m2m_changed, sender=User.groups.through)
def _membership_changed(sender: type, action: str, **kwargs: object) -> None:
    if action in ("post_add", "post_remove", "post_clear"):
        limits_changed()


@receiver(post_save, sender=User)
def _role_saved(
    sender: type, created: bool, update_fields: frozenset[str] | None, **kwargs: object
) -> None:
    if not created and (update_fields is None or "role" in update_fields):
        limits_changed()


@receiver(setting_changed)
def _quotas_changed(setting: str, **kwargs: object) -> None:
    if setting == "QUOTAS":  # tests override the role defaults
        _cache.clear()
