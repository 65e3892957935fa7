"""Reading the two wire formats in tests, strictly (blank lines and bad framing fail)."""

from __future__ import annotations

import json
import re

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")
USER = [{"role": "user", "content": "hi"}]


def ndjson_lines(body: bytes) -> list[dict]:
    """Every line parsed; a blank line or a missing final newline fails."""
    assert body.endswith(b"\n"), body[-80:]
    lines = body[:-1].split(b"\n")
    assert all(line.strip() for line in lines), "blank line in NDJSON"
    return [json.loads(line) for line in lines]


def sse_events(body: bytes) -> list[str]:
    """The data of every event; each must be one `data: ...` line ended by a blank line."""
    assert body.endswith(b"\n\n"), body[-80:]
    events = body[:-2].split(b"\n\n")
    out = []
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event, event
        out.append(event[6:].decode())
    return out


def sse_chunks(body: bytes) -> list[dict]:
    """The JSON chunks of a complete stream (which must end with [DONE])."""
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]
