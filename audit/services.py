"""Writing audit entries: the one function the rest of the site calls."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models, transaction
from django.http import HttpRequest

from audit.actions import NAME
from audit.models import Entry
from chatsite.redaction import redact

# Field names whose values are secrets: an entry keeps only one of the words that say what
# happened to a secret (KEY_STATES); any other value becomes CHANGED.
SECRET_FIELDS = frozenset(
    {"password", "secret", "api_key", "api_key_encrypted", "key", "token", "raw_key", "digest"}
)
KEY_STATES = frozenset({"none", "stored", "changed", "removed"})
CHANGED = "(changed)"


def record(
    request_or_none: HttpRequest | None,
    action: str,
    target: object | str = "",
    *,
    actor: Any = None,
    before: dict | None = None,
    after: dict | None = None,
) -> Entry:
    """Append one entry: `action` (a dotted name) done by `actor` on `target`.

    The actor defaults to the request's signed-in user and the address to the request's
    REMOTE_ADDR. `target` is a model instance (its type, id and text are kept) or a label.
    Secrets never reach an entry: see `scrub`.
    """
    if not NAME.match(action):
        raise ValueError(f"audit actions are dotted lower-case names, not {action!r}")
    if actor is None and request_or_none is not None:
        user = getattr(request_or_none, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    target_type, target_id, target_label = describe(target)
    return Entry.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        address=address_of(request_or_none),
        before=scrub(before),
        after=scrub(after),
    )


@contextmanager
def changes(
    request_or_none: HttpRequest | None,
    action: str,
    target: models.Model,
    *fields: str,
    actor: Any = None,
) -> Iterator[None]:
    """Record `action` if the block changes any of `target`'s `fields`, with the changed
    fields' values before and after; the change and its entry commit together."""
    with transaction.atomic():
        before = {name: getattr(target, name) for name in fields}
        yield
        after = {name: getattr(target, name) for name in fields}
        changed = [name for name in fields if before[name] != after[name]]
        if changed:
            record(
                request_or_none,
                action,
                target,
                actor=actor,
                before={name: before[name] for name in changed},
                after={name: after[name] for name in changed},
            )


def describe(target: object | str) -> tuple[str, str, str]:
    """A target's (type, id, label) for the entry."""
    if isinstance(target, models.Model):
        label = redact(str(target))[:255]
        return target._meta.model_name or "", str(target.pk or ""), label
    return "", "", redact(str(target))[:255]


def address_of(request: HttpRequest | None) -> str | None:
    """The client's address as the proxy middleware left it, or None if it is no address."""
    if request is None:
        return None
    try:
        return str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return None


def scrub(values: dict | None) -> dict | None:
    """`values` safe to keep: under a secret's name only a word of KEY_STATES survives (else
    CHANGED), and key-shaped strings and bearer credentials anywhere are redacted."""
    if values is None:
        return None
    return {str(name): _scrub_value(str(name), value) for name, value in values.items()}


def _scrub_value(name: str, value: Any) -> Any:
    if name.lower() in SECRET_FIELDS:
        return value if isinstance(value, str) and value in KEY_STATES else CHANGED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value("", item) for item in value]
    return value
