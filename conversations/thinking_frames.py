"""HTML of a streaming reply's Thinking block in its update frames.

The block is rendered whole only when it changes shape: when the first thinking arrives
(open, "Thinking…") and when the answer starts (closed, with how long the model thought).
In between, each update appends the new thinking as escaped text, so a round costs one
escape and a join, not a render.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.template.loader import render_to_string
from django.utils.html import escape

NONE, OPEN, CLOSED = "none", "open", "closed"
_ID, _TEXT = "REPLYIDSLOT", "THINKINGSLOT"


@dataclass
class ThinkingBlock:
    """What a streaming reply's page shows of its thinking so far."""

    reply_id: int
    shown: str = NONE

    def update(self, new: str, whole: list[str], answering: bool, seconds: float | None) -> str:
        """The frame HTML for `new` thinking (of the pieces `whole` so far), "" when
        nothing changes.

        `answering`: the answer has begun, so the block is shown closed.
        """
        if answering and self.shown in (NONE, OPEN) and whole:
            self.shown = CLOSED
            return self._block("".join(whole), False, seconds)
        if not new:
            return ""
        if self.shown == NONE:
            self.shown = OPEN
            return self._block("".join(whole), True, None)
        a, b, c = _append_pieces()
        return "".join((a, str(self.reply_id), b, escape(new), c))

    def _block(self, thinking: str, is_open: bool, seconds: float | None) -> str:
        return render_to_string(
            "conversations/frames.html#thinking_block",
            {
                "reply_id": self.reply_id,
                "thinking": thinking,
                "thinking_open": is_open,
                "seconds": seconds,
            },
        )


@cache
def _append_pieces() -> tuple[str, str, str]:
    """The append partial cut at its slots: reply id, thinking."""
    html = render_to_string(
        "conversations/frames.html#thinking_append", {"reply_id": _ID, "thinking": _TEXT}
    )
    before, _, html = html.partition(_ID)
    middle, found, after = html.partition(_TEXT)
    if not found:
        raise ValueError("frames.html#thinking_append must use each slot once, in order")
    return before, middle, after
