"""Ollama-native encoding: NDJSON lines for /api/chat and /api/generate (docs/api.md, Streams).

Per-token lines are assembled from pre-built byte pieces: the model name and the fixed
parts of a line are encoded once per stream, only the text and the timestamp per token.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _quote

from llm.events import Finished, Timings, ToolCall

NDJSON = "application/x-ndjson"
METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)

_second = -1
_second_text = ""


def created_at() -> str:
    """Now as RFC 3339 with nanoseconds, in UTC (`2025-01-01T00:00:00.123456789Z`)."""
    global _second, _second_text
    now = time.time_ns()
    second, fraction = divmod(now, 1_000_000_000)
    if second != _second:  # formatting the date is the costly part: once a second
        _second_text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = second
    return f"{_second_text}.{fraction:09d}Z"


def dumps(value: object) -> bytes:
    """Compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


def tool_call(call: ToolCall, index: int) -> dict:
    """A tool call as Ollama sends it: arguments as an object, never a string."""
    return {
        "id": call.id,
        "function": {"index": index, "name": call.name, "arguments": call.arguments},
    }


def metrics(finished: Finished | None, clock: Clock) -> dict[str, int]:
    """The six integer metrics: the upstream's untouched, gaps filled consistently.

    Missing durations are derived from the engine's total when it has one (a non-streaming
    OpenAI upstream has no first token to time), from this request's own clock otherwise.
    """
    timings = finished.timings if finished else Timings()
    total = timings.total_duration
    if total is None:
        total = clock.total_ns()
        prompt_eval = timings.prompt_eval_duration
        if prompt_eval is None:
            prompt_eval = clock.to_first_token_ns()
    else:
        prompt_eval = timings.prompt_eval_duration
        if prompt_eval is None:
            prompt_eval = total - timings.eval_duration if timings.eval_duration else 0
    eval_duration = timings.eval_duration
    if eval_duration is None:
        eval_duration = max(total - prompt_eval, 1)
    return {
        "total_duration": int(total),
        "load_duration": int(timings.load_duration or 0),
        "prompt_eval_count": int(finished.prompt_tokens) if finished else 0,
        "prompt_eval_duration": int(prompt_eval),
        "eval_count": int(finished.completion_tokens) if finished else 0,
        "eval_duration": int(eval_duration),
    }


class Clock:
    """When a request started and when its first event arrived (monotonic ns)."""

    def __init__(self) -> None:
        self.started = time.perf_counter_ns()
        self.first: int | None = None

    def mark_first(self) -> None:
        if self.first is None:
            self.first = time.perf_counter_ns()

    def total_ns(self) -> int:
        return max(time.perf_counter_ns() - self.started, 1)

    def to_first_token_ns(self) -> int:
        return max((self.first or time.perf_counter_ns()) - self.started, 1)


class OllamaStreamEncoder:
    """Encodes the reply of one /api/chat (`chat=True`) or /api/generate call: its NDJSON
    lines, or the one JSON object of a `"stream": false` request."""

    def __init__(self, model: str, *, chat: bool) -> None:
        self.chat = chat
        self.model = model
        self._head = b'{"model":' + _quote(model).encode() + b',"created_at":"'
        if chat:
            self._text = b'","message":{"role":"assistant","content":'
            self._thinking = b',"thinking":'
            self._tail = b'},"done":false}\n'
        else:
            self._text = b'","response":'
            self._thinking = b',"thinking":'
            self._tail = b',"done":false}\n'

    def delta(self, text: str, thinking: str, token_logprobs: list[dict] | None = None) -> bytes:
        """A done:false line carrying a piece of the reply (and its tokens' logprobs)."""
        line = self._head + created_at().encode() + self._text + _quote(text).encode()
        if thinking:
            line += self._thinking + _quote(thinking).encode()
        if not token_logprobs:
            return line + self._tail
        entries = b',"logprobs":' + dumps(logprobs(token_logprobs))
        return line + self._tail[:-2] + entries + b"}\n"

    def tool_calls(self, calls: list[ToolCall]) -> bytes:
        """A done:false line with whole tool calls."""
        body = self.base(done=False)
        payload = [tool_call(call, i) for i, call in enumerate(calls)]
        if self.chat:
            body["message"]["tool_calls"] = payload
        else:
            body["tool_calls"] = payload
        return dumps(body) + b"\n"

    def final(self, finished: Finished | None, clock: Clock, *, context: bool) -> bytes:
        """The done:true line with done_reason and the metrics."""
        return dumps(self.final_object(finished, clock, context=context)) + b"\n"

    def final_object(self, finished: Finished | None, clock: Clock, *, context: bool) -> dict:
        """The done:true object; the non-streaming answer is this plus the whole reply."""
        body = self.base(done=True)
        body["done_reason"] = (finished.reason if finished else "") or "stop"
        body.update(metrics(finished, clock))
        if context:
            body["context"] = list(finished.context or []) if finished else []
        return body

    def base(self, *, done: bool) -> dict:
        """The fields every line has, with an empty reply."""
        body: dict = {"model": self.model, "created_at": created_at()}
        if self.chat:
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body["done"] = done
        return body


def logprobs(entries: list[dict]) -> list[dict]:
    """Token logprobs in Ollama's shape: `bytes` left out where the upstream sent null."""
    return [_token_logprob(entry) for entry in entries]


def _token_logprob(entry: dict) -> dict:
    out = {name: value for name, value in entry.items() if value is not None}
    if isinstance(out.get("top_logprobs"), list):
        out["top_logprobs"] = [_token_logprob(top) for top in out["top_logprobs"]]
    return out


def error_line(message: str) -> bytes:
    """The one line that ends a stream that failed after it started (no done:true follows)."""
    return dumps({"error": message}) + b"\n"
