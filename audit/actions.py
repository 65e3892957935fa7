"""The audit log's actions: their dotted names and how pages word them."""

from __future__ import annotations

import re

# A dotted lower-case name ("account.role"); a filter may also give just its first part.
NAME = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")
NAME_OR_PREFIX = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*$")

LABELS = {
    "account.approved": "Sign-up approved",
    "account.role": "Role changed",
    "account.deactivated": "Account deactivated",
    "account.reactivated": "Account reactivated",
    "group.created": "Group created",
    "group.changed": "Group changed",
    "group.deleted": "Group deleted",
    "group.members": "Group members changed",
    "limits.changed": "Limits changed",
    "connection.added": "Connection added",
    "connection.changed": "Connection changed",
    "connection.deleted": "Connection deleted",
    "connection.enabled": "Connection enabled",
    "connection.disabled": "Connection disabled",
    "key.created": "API key created",
    "key.revoked": "API key revoked",
    "login.throttled": "Sign-ins throttled",
    "login.link_issued": "One-time sign-in link made",
    "login.link": "Signed in with a one-time link",
    "sso.login": "Signed in through the identity provider",
    "sso.signup": "Account created through the identity provider",
    "sso.link": "Account linked to the identity provider",
    "share.created": "Share created",
    "share.revoked": "Share revoked",
}


def label(action: str) -> str:
    """How a page words an action (its dotted name when it has no label yet)."""
    return LABELS.get(action, action)


def choices() -> list[tuple[str, object]]:
    """The actions a filter offers, grouped by their first part."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, text in LABELS.items():
        groups.setdefault(name.split(".")[0], []).append((name, text))
    return [("", "Any action")] + [  # optgroups: (label, [(value, label), ...])
        (group.capitalize(), [(group, f"Any {group} action"), *items])
        for group, items in groups.items()
    ]
