"""Reasoning ("thinking") text of a reply: the `<think>` tags some servers leave in the
content, the per-conversation think switch, and the reply's transcript in its snapshot.

A streaming reply's snapshot holds its transcript: `<think>` + thinking + `</think>` +
answer (just the answer when the model did not think), so a page that joins mid-reply
gets both from the one linear text.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"

# The conversation's switch: "" leaves the model's default (nothing is sent).
THINK_CHOICES = [
    ("", "Model default"),
    ("off", "Off"),
    ("on", "On"),
    ("low", "Low"),
    ("medium", "Medium"),
    ("high", "High"),
]
_THINK_PARAM: dict[str, bool | str | None] = {
    "": None,
    "off": False,
    "on": True,
    "low": "low",
    "medium": "medium",
    "high": "high",
}


def think_param(choice: str) -> bool | str | None:
    """The engine's `think` argument for a conversation's switch (None: not sent)."""
    return _THINK_PARAM.get(choice)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    """Splits streamed content into thinking and answer at `<think>…</think>`.

    Only a `<think>` that opens the reply (after blank space) counts, so an answer that
    talks about the tag is left alone. Text that may be the start of a tag is held back
    until the next piece (or `flush`) settles it.
    """

    def __init__(self) -> None:
        self.state = "start"  # "start": undecided, "think": inside, "answer": past it
        self.held = ""
        self.trim = False  # past `</think>`: blank space before the answer is dropped

    def feed(self, piece: str) -> tuple[str, str]:
        """(thinking, answer) that `piece` settles."""
        text = self.held + piece
        self.held = ""
        if self.state == "start":
            stripped = text.lstrip()
            if stripped.startswith(OPEN):
                self.state = "think"
                text = stripped[len(OPEN) :]
            elif stripped and not OPEN.startswith(stripped[: len(OPEN)]):
                self.state = "answer"
            else:
                self.held = text
                return "", ""
        if self.state == "answer":
            return "", self._answer(text)
        before, found, after = text.partition(CLOSE)
        if found:
            self.state, self.trim = "answer", True
            return before, self._answer(after)
        keep = _partial_suffix(text, CLOSE)
        if keep:
            self.held = text[-keep:]
            text = text[:-keep]
        return text, ""

    def _answer(self, text: str) -> str:
        if self.trim:
            text = text.lstrip()
            self.trim = not text
        return text

    def flush(self) -> tuple[str, str]:
        """(thinking, answer) still held back at the end of the stream."""
        held, self.held = self.held, ""
        return (held, "") if self.state == "think" else ("", held)


def strip_thinking(text: str) -> str:
    """The answer of a whole reply, without the `<think>…</think>` that may open it."""
    splitter = ThinkSplitter()
    answer = splitter.feed(text)[1]
    return answer + splitter.flush()[1]


def split_transcript(transcript: str) -> tuple[str, str, bool]:
    """A snapshot's transcript as (thinking, answer, answer started)."""
    if not transcript.startswith(OPEN):
        return "", transcript, True
    thinking, found, answer = transcript[len(OPEN) :].partition(CLOSE)
    return thinking, answer, bool(found)


class Transcript:
    """Encodes a reply's thinking and answer, piece by piece, as its snapshot text."""

    def __init__(self) -> None:
        self.state = "start"  # "think" once `<think>` is written, "answer" once closed

    def encode(self, thinking: str, answer: str) -> str:
        """The snapshot text for the next thinking and answer pieces.

        Thinking that comes after the answer began is not in the snapshot (the saved
        message has it).
        """
        out = []
        if thinking and self.state == "start":
            self.state = "think"
            out.append(OPEN)
        if thinking and self.state == "think":
            out.append(thinking)
        if answer:
            if self.state == "think":
                out.append(CLOSE)
            self.state = "answer"
            out.append(answer)
        return "".join(out)
