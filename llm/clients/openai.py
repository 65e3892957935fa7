"""The OpenAI-compatible protocol client: native requests are translated, SSE comes back."""

from __future__ import annotations

import json
import time
from typing import Any

from llm.clients.base import (
    EmbedReading,
    TurnState,
    UpstreamCall,
    embed_texts,
    error_message,
    int_or_none,
    truncate,
)
from llm.clients.base import embed_call as base_embed_call
from llm.errors import InvalidRequest, UpstreamError
from llm.events import Delta, Event, Finished, Timings, ToolCall, ToolCalls
from llm.passthrough import openai_chat_body
from llm.tokens import estimate_prompt_tokens
from llm.translate import generate_messages, native_to_openai_request, new_call_id

# Normalized to Ollama's words (see llm.events.Finished); others pass through.
_FINISH_REASONS = {"tool_calls": "stop", "function_call": "stop", "eos": "stop"}


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
    """A POST /chat/completions call: an OpenAI caller's own `openai_fields` as they are
    (`llm.passthrough`), else the translation of the native request (`keep_alive`,
    `truncate` and `shift` have no equivalent)."""
    if openai_fields is not None:
        body = openai_chat_body(openai_fields, upstream_model, stream=stream)
    else:
        body = native_to_openai_request(
            upstream_model,
            messages,
            options=options,
            tools=tools,
            format=format,
            think=think,
            stream=stream,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )
    parser = OpenAIParser(prompt_estimate=estimate_prompt_tokens(messages))
    return UpstreamCall(f"{url}/chat/completions", body, headers, model, stream, parser)


def generate_call(
    url: str,
    headers: dict[str, str],
    model: str,
    upstream_model: str,
    prompt: str,
    **fields: Any,
) -> UpstreamCall:
    """A generate request as a chat: system + user messages.

    `template`, `raw`, `context`, `keep_alive`, `truncate` and `shift` are Ollama-only and
    ignored; `suffix`
    (fill-in-the-middle) would change the meaning of the request, so it is refused.
    """
    if fields.get("suffix"):
        raise InvalidRequest("suffix is only supported by Ollama upstreams", param="suffix")
    messages = generate_messages(prompt, system=fields.get("system"), images=fields.get("images"))
    return chat_call(
        url,
        headers,
        model,
        upstream_model,
        messages,
        options=fields.get("options"),
        tools=None,
        format=fields.get("format"),
        think=fields.get("think"),
        keep_alive=None,
        stream=fields.get("stream", True),
        logprobs=fields.get("logprobs"),
        top_logprobs=fields.get("top_logprobs"),
    )


def embed_call(
    url: str,
    headers: dict[str, str],
    model: str,
    upstream_model: str,
    input: str | list[str],
    **fields: Any,
) -> UpstreamCall:
    """A POST /embeddings call. Of Ollama's optional fields only `dimensions` has an
    equivalent; `truncate`, `options` and `keep_alive` are dropped."""
    texts = embed_texts(input)
    body: dict[str, Any] = {"model": upstream_model, "input": texts, "encoding_format": "float"}
    if fields.get("dimensions"):  # Ollama's 0 means "the model's own"; OpenAI refuses 0
        body["dimensions"] = fields["dimensions"]
    return base_embed_call(f"{url}/embeddings", body, headers, model, texts, _embed_reading)


def _embed_reading(data: dict) -> EmbedReading:
    items = data.get("data")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None, None, Timings()
    ordered = sorted(items, key=lambda item: int_or_none(item.get("index")) or 0)
    usage = data.get("usage") or {}
    prompt = int_or_none(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return [item.get("embedding") for item in ordered], prompt, Timings()


class OpenAIParser(TurnState):
    """SSE events (or one JSON object) of /chat/completions into events.

    Every `data:` line is taken as one event: OpenAI-compatible servers send one JSON
    object per line, and this also copes with servers that separate events by a single
    newline (the openai SDK silently yields nothing for those).
    """

    def __init__(self, *, prompt_estimate: int) -> None:
        super().__init__(prompt_estimate)
        self.buffer = b""
        self.calls: dict[int, dict[str, Any]] = {}
        self.calls_sent = False
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.event_name = ""
        self.done = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Events of the complete lines received so far."""
        self.buffer += chunk
        if b"\n" not in chunk:
            return []
        *lines, self.buffer = self.buffer.split(b"\n")
        events: list[Event] = []
        for line in lines:
            if not self.done:
                self._line(line.rstrip(b"\r"), events)
        return events

    def finish(self) -> list[Event]:
        """The closing events; raises if the stream broke before the model finished."""
        events: list[Event] = []
        if self.buffer.strip() and not self.done:
            self._line(self.buffer.rstrip(b"\r"), events)
        if not self.done:
            if self.finish_reason is None:
                raise self.interrupted("the stream ended before the model finished")
            self._close(events)  # a finish_reason without [DONE] is a complete reply
        return events

    def whole(self, data: Any) -> list[Event]:
        """Events of a non-streaming chat.completion."""
        if not isinstance(data, dict):
            raise self.in_band_error("the upstream sent a response that is not a JSON object")
        if "error" in data:
            raise self.in_band_error(error_message(data))
        choices = data.get("choices") or [{}]
        choice = choices[0] or {}
        message = choice.get("message") or {}
        events: list[Event] = []
        text = message.get("content") or ""
        thinking = message.get("reasoning_content") or message.get("reasoning") or ""
        logprobs = _logprobs(choice)
        if text or thinking or logprobs:
            events.append(Delta(text, thinking, logprobs))
            self.text.append(text)
        for index, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            self.calls[index] = {
                "id": call.get("id"),
                "name": function.get("name") or "",
                "args": [function.get("arguments") or ""],
            }
        self.finish_reason = choice.get("finish_reason") or "stop"
        self.usage = data.get("usage")
        self._close(events)
        return events

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line or line.startswith(b":"):
            return  # event separator or comment (": ping")
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"event":
            self.event_name = value.decode("utf-8", "replace").strip()
        elif name == b"data":
            self._data(value, events)
            self.event_name = ""

    def _data(self, value: bytes, events: list[Event]) -> None:
        if value.strip() == b"[DONE]":
            self._close(events)
            return
        try:
            data = json.loads(value)
        except ValueError:
            raise self.interrupted(f"invalid SSE data: {truncate(repr(value), 100)}") from None
        if not isinstance(data, dict):
            return
        if "error" in data or self.event_name == "error":
            raise self.in_band_error(error_message(data, fallback="error event from upstream"))
        for choice in data.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        if data.get("usage"):
            self.usage = data["usage"]

    def _choice(self, choice: dict, events: list[Event]) -> None:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
        logprobs = _logprobs(choice)
        if text or thinking or logprobs:
            if self.first_ns is None:
                self.first_ns = time.perf_counter_ns()
            events.append(Delta(text, thinking, logprobs))
            self.text.append(text)
            self.produced = True
        for position, fragment in enumerate(delta.get("tool_calls") or []):
            self._fragment(position, fragment)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
            self._send_calls(events)

    def _fragment(self, position: int, fragment: dict) -> None:
        """Collect one tool-call delta: id/name arrive first, arguments in pieces."""
        index = fragment.get("index", position)
        call = self.calls.setdefault(index, {"id": None, "name": "", "args": []})
        if fragment.get("id"):
            call["id"] = fragment["id"]
        function = fragment.get("function") or {}
        if function.get("name") and not call["name"]:
            call["name"] = function["name"]
        if function.get("arguments"):
            call["args"].append(function["arguments"])
        if self.first_ns is None:
            self.first_ns = time.perf_counter_ns()

    def _send_calls(self, events: list[Event]) -> None:
        if not self.calls or self.calls_sent:
            return
        self.calls_sent = True
        self.produced = True
        events.append(ToolCalls([self._tool_call(self.calls[i]) for i in sorted(self.calls)]))

    def _tool_call(self, call: dict[str, Any]) -> ToolCall:
        text = "".join(call["args"]).strip() or "{}"
        try:
            arguments = json.loads(text)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise UpstreamError(
                502,
                f"the model produced invalid arguments for tool {call['name']!r}: "
                f"{truncate(text, 200)}",
            )
        return ToolCall(id=call["id"] or new_call_id(), name=call["name"], arguments=arguments)

    def _close(self, events: list[Event]) -> None:
        self._send_calls(events)
        self.done = True
        events.append(self._finished())

    def _finished(self) -> Finished:
        end = time.perf_counter_ns()
        first = self.first_ns
        timings = Timings(
            total_duration=end - self.started_ns,
            prompt_eval_duration=first - self.started_ns if first else None,
            eval_duration=end - first if first else None,
        )
        usage = self.usage or {}
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        reported = isinstance(prompt, int) and isinstance(completion, int)
        tokens = self.token_usage((prompt, completion) if reported else None)
        reason = self.finish_reason or "stop"
        return Finished(
            reason=_FINISH_REASONS.get(reason, reason),
            prompt_tokens=tokens.prompt_tokens,
            completion_tokens=tokens.completion_tokens,
            timings=timings,
            usage_source=tokens.source,
        )


def _logprobs(choice: dict) -> list[dict] | None:
    """The token logprobs of a choice (`logprobs.content`), as the upstream sent them."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    return content if isinstance(content, list) and content else None
