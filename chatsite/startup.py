"""Start-up tasks of the apps, run by `manage.py prepare` before the server starts."""

from __future__ import annotations

from collections.abc import Callable

from conversations.recovery import mark_orphaned_replies
from llm.services import sync_default_connections


def tasks() -> list[Callable[[], object]]:
    """The apps' start-up tasks, in order; each may return a line to print."""
    return [sync_default_connections, mark_orphaned_replies]
