"""Frames from the chat page: decoded, or turned into what to tell the page when they are
unusable.

Unusable: text that is not JSON or is nested too deep to decode, text with an unpaired
surrogate (valid JSON, but no UTF-8 exists for it: the database and the socket would fail
on it later), and binary frames. The page gets a clear error under the composer and the
socket stays open. (Daphne lets an application close only with 1000 or 3000-4999, so 1003
and 1007 are not ours to send. A text frame that is not UTF-8 never reaches the consumer:
Daphne drops that connection itself, and the browser reports 1006 and reconnects.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

UNREADABLE = "That message could not be read. Reload the page and try again."
NOT_TEXT = "That message could not be read: the chat takes text messages only."
BROKEN_CHARACTER = (
    "Your message contains a broken character (shown as \ufffd). Remove it and send again."
)

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Unreadable:
    """A frame the consumer cannot act on: what to tell the page, and text to put back."""

    error: str
    text: str = ""


def decode(text_data: str | None) -> Any:
    """The frame's JSON content, or an `Unreadable` (None: a binary frame)."""
    if text_data is None:
        return Unreadable(NOT_TEXT)
    try:
        content = json.loads(text_data)
    except (ValueError, RecursionError):
        return Unreadable(UNREADABLE)
    if _has_lone_surrogate(content):
        # A new message goes back in the box, readable; an edit stays in its own form.
        sent = isinstance(content, dict) and content.get("action") == "send"
        text = content.get("content") if sent else None
        restore = _SURROGATE.sub("\ufffd", text) if isinstance(text, str) else ""
        return Unreadable(BROKEN_CHARACTER, restore)
    return content


def _has_lone_surrogate(value: Any) -> bool:
    """Whether decoded JSON holds a string with an unpaired surrogate (JSON's "\\ud800")."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
