"""OpenAI encoding: chat.completion objects and SSE chunk events (docs/api.md, Streams).

Every event is one whole `data: <json>\\n\\n`; the per-token event is assembled from byte
pieces built once per stream.
"""

from __future__ import annotations

import json
import secrets
import time
from json.encoder import encode_basestring_ascii as _quote

from llm.events import Finished, ToolCall

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def completion_id() -> str:
    """A fresh `chatcmpl-…` id."""
    return f"chatcmpl-{secrets.token_hex(12)}"


def finish_reason(finished: Finished | None, called_tools: bool) -> str:
    """OpenAI's finish_reason for the engine's (Ollama-worded) reason."""
    reason = finished.reason if finished else ""
    if reason in ("", "stop", "load", "unload"):
        return "tool_calls" if called_tools else "stop"
    return reason


def tool_calls(calls: list[ToolCall], *, with_index: bool) -> list[dict]:
    """Tool calls with arguments as a JSON string (and `index` inside a stream)."""
    out = []
    for i, call in enumerate(calls):
        item: dict = {"index": i} if with_index else {}
        item.update(
            id=call.id,
            type="function",
            function={"name": call.name, "arguments": json.dumps(call.arguments)},
        )
        out.append(item)
    return out


def usage(finished: Finished | None) -> dict:
    """The usage object; totals add up by construction."""
    prompt = finished.prompt_tokens if finished else 0
    completion = finished.completion_tokens if finished else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def logprobs(entries: list[dict] | None) -> dict | None:
    """A choice's `logprobs` for the upstream's token entries (None without them), each with
    the keys OpenAI's clients require (`bytes` null and `top_logprobs` empty when not sent)."""
    if not entries:
        return None
    return {"content": [_token_logprob(entry) for entry in entries], "refusal": None}


def _token_logprob(entry: dict) -> dict:
    out = {"bytes": None, **entry}
    out["top_logprobs"] = [{"bytes": None, **top} for top in entry.get("top_logprobs") or []]
    return out


def completion(
    model: str,
    *,
    text: str,
    thinking: str,
    calls: list[ToolCall],
    finished: Finished | None,
    token_logprobs: list[dict] | None = None,
) -> dict:
    """A whole (non-streaming) chat.completion."""
    message: dict = {
        "role": "assistant",
        "content": text or (None if calls else ""),
        "refusal": None,
    }
    if thinking:  # both names: DeepSeek's (litellm, LangChain) and vLLM's and OpenRouter's
        message["reasoning_content"] = thinking
        message["reasoning"] = thinking
    if calls:
        message["tool_calls"] = tool_calls(calls, with_index=False)
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(finished, bool(calls)),
                "logprobs": logprobs(token_logprobs),
            }
        ],
        "usage": usage(finished),
        "system_fingerprint": "fp_chatsite",
    }


class OpenAIStreamEncoder:
    """Encodes one streamed chat completion as SSE chunk events (the same id and `created`
    on every chunk)."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        head = json.dumps(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
            },
            separators=(",", ":"),
        )
        self._head = b"data: " + head[:-1].encode() + b',"choices":[{"index":0,"delta":'
        usage_null = b',"usage":null' if include_usage else b""
        self._open = b',"finish_reason":null,"logprobs":null}]' + usage_null + b"}\n\n"
        self._usage_null = usage_null

    def role(self) -> bytes:
        """The first event: the assistant's role, with empty content."""
        return self._head + b'{"role":"assistant","content":""}' + self._open

    def content(self, text: str, token_logprobs: list[dict] | None = None) -> bytes:
        """A piece of the reply, with the logprobs of its tokens when there are any."""
        delta = b'{"content":' + _quote(text).encode() + b"}"
        if not token_logprobs:
            return self._head + delta + self._open
        entries = json.dumps(logprobs(token_logprobs), separators=(",", ":")).encode()
        tail = b',"finish_reason":null,"logprobs":' + entries + b"}]" + self._usage_null
        return self._head + delta + tail + b"}\n\n"

    def reasoning(self, text: str) -> bytes:
        """A piece of the thinking, under both names (see `completion`)."""
        quoted = _quote(text).encode()
        delta = b'{"reasoning_content":' + quoted + b',"reasoning":' + quoted + b"}"
        return self._head + delta + self._open

    def tool_calls(self, calls: list[ToolCall]) -> bytes:
        """Whole tool calls in one delta; each carries its `index`, id, type and name."""
        delta = json.dumps(
            {"tool_calls": tool_calls(calls, with_index=True)}, separators=(",", ":")
        )
        return self._head + delta.encode() + self._open

    def finish(self, reason: str) -> bytes:
        """The one chunk with a finish_reason; its delta is empty."""
        tail = b',"finish_reason":' + _quote(reason).encode() + b',"logprobs":null}]'
        return self._head + b"{}" + tail + self._usage_null + b"}\n\n"

    def usage(self, finished: Finished | None) -> bytes:
        """The usage-only chunk sent before [DONE] when include_usage was asked."""
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(finished),
        }
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def error_event(body: dict) -> bytes:
    """The event that ends a stream that failed after it started (no [DONE] follows)."""
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
