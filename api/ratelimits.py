"""OpenAI's x-ratelimit-* headers, from where the caller stands after the meter's answer.

`x-ratelimit-{limit,remaining,reset}-requests` describe the requests-per-minute limit and
`-tokens` the token budget with the least left (the day's, the month's or the key's own);
each pair is sent only when such a limit applies. Resets are written as OpenAI writes them,
Go durations: `1s`, `6m0s`, `13h4m10s`, `250ms`.

The API door collects them per request (`collect`), the relay notes an admission's
(`note`), and the door puts them on the response, whatever its shape.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

from usage.headroom import Headroom, Window

_collected: ContextVar[dict[str, str] | None] = ContextVar("ratelimit_headers", default=None)


def headers(headroom: Headroom) -> dict[str, str]:
    """The x-ratelimit-* headers for `headroom` (none for a limit that does not apply)."""
    found: dict[str, str] = {}
    for kind, window in (("requests", headroom.requests), ("tokens", headroom.tokens)):
        if window is not None:
            found.update(_window_headers(kind, window))
    return found


def _window_headers(kind: str, window: Window) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{kind}": str(window.limit),
        f"x-ratelimit-remaining-{kind}": str(window.remaining),
        f"x-ratelimit-reset-{kind}": go_duration(window.reset_seconds),
    }


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (whole seconds above one second, milliseconds below)."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def collect() -> dict[str, str]:
    """Start collecting this request's headers; the dict fills as the relay notes them."""
    found: dict[str, str] = {}
    _collected.set(found)
    return found


def note(headroom: Headroom) -> None:
    """Record an admission's headers for the response of the request being served."""
    found = _collected.get()
    if found is not None:
        found.update(headers(headroom))
