"""The Ollama protocol client: request bodies pass through as supplied, NDJSON comes back."""

from __future__ import annotations

import json
from typing import Any

from llm.clients.base import (
    EmbedReading,
    TurnState,
    UpstreamCall,
    error_message,
    int_or_none,
    truncate,
)
from llm.clients.base import embed_call as base_embed_call
from llm.events import Delta, Event, Finished, Timings, ToolCall, ToolCalls
from llm.tokens import estimate_prompt_tokens, estimate_tokens
from llm.translate import new_call_id

_METRICS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")


def _with_optional(body: dict, **fields: Any) -> dict:
    """`body` plus each field that is not None, untouched (byte-for-byte pass-through)."""
    body.update({name: value for name, value in fields.items() if value is not None})
    return body


def chat_call(
    url: str,
    headers: dict[str, str],
    model: str,
    upstream_model: str,
    messages: list[dict],
    *,
    options: dict | None,
    tools: list | None,
    format: str | dict | None,
    think: bool | str | None,
    keep_alive: int | float | str | None,
    stream: bool,
    truncate: bool | None = None,
    shift: bool | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    openai_fields: dict | None = None,
) -> UpstreamCall:
    """A POST /api/chat call (`openai_fields`, an OpenAI caller's own, are already
    translated into the other arguments)."""
    body = _with_optional(
        {"model": upstream_model, "messages": messages, "stream": stream},
        options=options,
        tools=tools,
        format=format,
        think=think,
        keep_alive=keep_alive,
        truncate=truncate,
        shift=shift,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    parser = OllamaParser(chat=True, prompt_estimate=estimate_prompt_tokens(messages))
    return UpstreamCall(f"{url}/api/chat", body, headers, model, stream, parser)


def generate_call(
    url: str,
    headers: dict[str, str],
    model: str,
    upstream_model: str,
    prompt: str,
    **fields: Any,
) -> UpstreamCall:
    """A POST /api/generate call; `fields` are generate's optional request fields."""
    stream = fields.pop("stream", True)
    body = _with_optional({"model": upstream_model, "prompt": prompt, "stream": stream}, **fields)
    estimate = estimate_tokens(prompt) + estimate_tokens(fields.get("system") or "")
    parser = OllamaParser(chat=False, prompt_estimate=estimate)
    return UpstreamCall(f"{url}/api/generate", body, headers, model, stream, parser)


def embed_call(
    url: str,
    headers: dict[str, str],
    model: str,
    upstream_model: str,
    input: str | list[str],
    **fields: Any,
) -> UpstreamCall:
    """A POST /api/embed call; `input` and the optional `fields` pass through as supplied."""
    body = _with_optional({"model": upstream_model, "input": input}, **fields)
    return base_embed_call(f"{url}/api/embed", body, headers, model, input, _embed_reading)


def _embed_reading(data: dict) -> EmbedReading:
    timings = Timings(
        int_or_none(data.get("total_duration")), int_or_none(data.get("load_duration"))
    )
    return data.get("embeddings"), int_or_none(data.get("prompt_eval_count")), timings


class OllamaParser(TurnState):
    """NDJSON lines (or one JSON object) of /api/chat or /api/generate into events."""

    def __init__(self, *, chat: bool, prompt_estimate: int) -> None:
        super().__init__(prompt_estimate)
        self.chat = chat
        self.buffer = b""
        self.done = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Events of the complete lines received so far."""
        self.buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, self.buffer = self.buffer.split(b"\n")
        events: list[Event] = []
        for line in lines:
            if line.strip() and not self.done:  # blank lines are heartbeats
                self._line(line, events)
        return events

    def finish(self) -> list[Event]:
        """Events of a last unterminated line; raises if the stream never finished."""
        events: list[Event] = []
        if self.buffer.strip() and not self.done:
            self._line(self.buffer, events)
        if not self.done:
            raise self.interrupted("the stream ended before the model finished")
        return events

    def whole(self, data: Any) -> list[Event]:
        """Events of a `stream: false` response."""
        if not isinstance(data, dict):
            raise self.in_band_error("the upstream sent a response that is not a JSON object")
        if "error" in data:
            raise self.in_band_error(error_message(data))
        events: list[Event] = []
        self._chunk(data, events)
        if not self.done:
            events.append(self._finished(data))
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        try:
            data = json.loads(line)
        except ValueError:
            raise self.interrupted(f"invalid JSON line: {truncate(repr(line), 100)}") from None
        if not isinstance(data, dict):
            raise self.interrupted(f"unexpected line: {truncate(repr(line), 100)}")
        if "error" in data:
            raise self.in_band_error(error_message(data))
        self._chunk(data, events)

    def _chunk(self, data: dict, events: list[Event]) -> None:
        part = (data.get("message") or {}) if self.chat else data
        text = part.get("content" if self.chat else "response") or ""
        thinking = part.get("thinking") or ""
        logprobs = data.get("logprobs") or None  # per token, as the upstream sent them
        if not isinstance(logprobs, list):
            logprobs = None
        if text or thinking or logprobs:
            events.append(Delta(text, thinking, logprobs))
            self.text.append(text)
            self.produced = True
        if part.get("tool_calls"):
            events.append(ToolCalls([_tool_call(call) for call in part["tool_calls"]]))
            self.produced = True
        if data.get("done"):
            events.append(self._finished(data))
            self.done = True

    def _finished(self, data: dict) -> Finished:
        timings = Timings(*(int_or_none(data.get(name)) for name in _METRICS))
        prompt = int_or_none(data.get("prompt_eval_count"))
        completion = int_or_none(data.get("eval_count"))
        # Metrics are omitempty: with the final metrics present, a missing count means 0.
        reported = completion is not None or timings.total_duration is not None
        tokens = self.token_usage((prompt or 0, completion or 0) if reported else None)
        context = data.get("context")
        return Finished(
            reason=data.get("done_reason") or "stop",
            prompt_tokens=tokens.prompt_tokens,
            completion_tokens=tokens.completion_tokens,
            timings=timings,
            usage_source=tokens.source,
            context=context if isinstance(context, list) else None,
        )


def _tool_call(call: dict) -> ToolCall:
    function = call.get("function") or {}
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):  # not Ollama's shape, but seen from look-alike servers
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {}
    return ToolCall(
        id=call.get("id") or new_call_id(),
        name=function.get("name") or "",
        arguments=arguments if isinstance(arguments, dict) else {},
    )
