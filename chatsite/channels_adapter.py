"""Handing a channel-layer message to a consumer's handler past Channels' `dispatch`.

Checked against: channels 4.0.0 to 4.3.2 (`channels.consumer.AsyncConsumer.dispatch`, read
in each release; tested on the installed one; pyproject.toml pins the minor version). It
finds the handler named after the message's type and, since 4.2, first runs
`aclose_old_connections()`, a hop to a thread.
Reason: the chat socket's update frames touch no database and come several times a second
per socket; that hop per frame per socket is skipped for them (figures in bench/README.md).
Fallback: Channels' own `dispatch` (the consumer's `super().dispatch`) when that method
refers to anything beyond the above (a release that does more there; logged once), or when
`LIBRARY_FALLBACKS=1` forces it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from channels.consumer import AsyncConsumer
from django.conf import settings

log = logging.getLogger(__name__)

# Every name `AsyncConsumer.dispatch` uses in the releases checked.
CHECKED_DISPATCH_NAMES = frozenset(
    {"getattr", "get_handler_name", "aclose_old_connections", "ValueError"}
)


def may_bypass_dispatch() -> bool:
    """Whether a handler that touches no database may be awaited directly instead of
    through Channels' `dispatch`."""
    return not settings.LIBRARY_FALLBACKS and _dispatch_as_checked()


def dispatch_checked(dispatch: Callable[..., Any]) -> bool:
    """Whether `dispatch` uses nothing beyond what Channels' did in the releases checked."""
    return set(dispatch.__code__.co_names) <= CHECKED_DISPATCH_NAMES


@cache
def _dispatch_as_checked() -> bool:
    if dispatch_checked(AsyncConsumer.dispatch):
        return True
    log.warning("Channels' consumer dispatch is not as checked: every message goes through it")
    return False
