"""Request translation between the OpenAI and Ollama-native shapes, done once, here.

(a) `openai_request_to_native`: the platform's OpenAI door turns a /v1/chat/completions body
    into a native request (the fields honoured: docs/api.md), for an Ollama upstream; it
    keeps the caller's own fields (`llm.passthrough`) for an OpenAI-compatible one.
(b) `native_to_openai_request`: a native request that runs on an OpenAI-compatible upstream.
Response events are normalized by the protocol clients, not here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from llm.errors import InvalidRequest
from llm.passthrough import openai_chat_fields

_DATA_URI = re.compile(r"data:(?:image/(?:jpeg|jpg|png|webp))?;base64,(?P<data>.*)", re.S)
_OPTION_FIELDS = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
_EFFORT_TO_THINK: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}
# Leading bytes of the image formats a data URI has to name for an OpenAI upstream.
_IMAGE_MAGIC = {
    "iVBORw0KGgo": "image/png",
    "/9j/": "image/jpeg",
    "UklGR": "image/webp",
    "R0lGOD": "image/gif",
}


@dataclass
class NativeChatRequest:
    """An OpenAI chat request in native terms, ready for `llm.stream_chat`."""

    model: str
    messages: list[dict]
    options: dict = field(default_factory=dict)
    tools: list | None = None
    format: str | dict | None = None
    think: bool | str | None = None
    stream: bool = False
    include_usage: bool = False
    logprobs: bool | None = None
    top_logprobs: int | None = None
    openai: dict = field(default_factory=dict)  # sent as they are to an OpenAI upstream


def new_call_id() -> str:
    """A tool call id in Ollama's style."""
    return f"call_{secrets.token_hex(4)}"


# -- (a) OpenAI request -> native ------------------------------------------------------------


def openai_request_to_native(body: dict) -> NativeChatRequest:
    """Translate a /v1/chat/completions body; raises InvalidRequest with the bad `param`."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise InvalidRequest("model is required", param="model")
    if body.get("n") not in (None, 1):
        raise InvalidRequest("n > 1 is not supported", param="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    stream_options = body.get("stream_options") or {}
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools must be an array", param="tools")
    return NativeChatRequest(
        model=model,
        messages=_native_messages(body.get("messages")),
        options=_native_options(body),
        tools=offered_tools(tools, body.get("tool_choice")),
        format=_native_format(body.get("response_format")),
        think=_native_think(body),
        stream=stream,
        include_usage=bool(stream and stream_options.get("include_usage")),
        logprobs=body.get("logprobs"),
        top_logprobs=body.get("top_logprobs"),
        openai=openai_chat_fields(body),
    )


def offered_tools(tools: list | None, choice: Any) -> list | None:
    """The tools a native request offers for an OpenAI `tool_choice`.

    Ollama has no tool_choice: `"none"` offers no tools, a choice naming functions offers
    only those (so the model can call no other), and `"required"` offers them all, which
    is as close as Ollama comes to forcing a call.
    """
    if choice == "none":
        return None
    names = chosen_tools(choice)
    if tools is None or names is None:
        return tools
    return [tool for tool in tools if tool_name(tool) in names]


def chosen_tools(choice: Any) -> set[str] | None:
    """The names of the tools a `tool_choice` object restricts the model to; None when it
    restricts nothing (`"auto"`, `"required"`, `"none"`, absent)."""
    if not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "allowed_tools":
        allowed = choice.get("allowed_tools")
        listed = allowed.get("tools") if isinstance(allowed, dict) else None
        return {tool_name(tool) or "" for tool in listed} if isinstance(listed, list) else set()
    spec = choice.get(kind) if isinstance(kind, str) else None
    return {spec.get("name") or ""} if isinstance(spec, dict) else set()


def tool_name(tool: Any) -> str | None:
    """The name of a tool definition (`{"type": "function", "function": {"name": ...}}`)."""
    kind = tool.get("type") or "function" if isinstance(tool, dict) else None
    if not isinstance(kind, str):
        return None
    spec = tool.get(kind)
    name = spec.get("name") if isinstance(spec, dict) else None
    return name if isinstance(name, str) else None


def _native_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be an array", param="messages")
    if not messages:
        raise InvalidRequest("[] is too short - 'messages'", param="messages")
    names_by_call_id: dict[str, str] = {}
    out = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest("each message needs a role", param="messages")
        native = _native_message(message, names_by_call_id)
        out.append(native)
    return out


def _native_message(message: dict, names_by_call_id: dict[str, str]) -> dict:
    role = message["role"].lower()
    native: dict[str, Any] = {"role": "system" if role == "developer" else role}
    text, images = _native_content(message.get("content"))
    native["content"] = text
    if images:
        native["images"] = images
    thinking = message.get("reasoning") or message.get("reasoning_content")
    if thinking:
        native["thinking"] = thinking
    if message.get("tool_calls"):
        native["tool_calls"] = [
            _native_tool_call(i, call, names_by_call_id)
            for i, call in enumerate(message["tool_calls"])
        ]
    if role == "tool":
        call_id = message.get("tool_call_id")
        name = message.get("name") or names_by_call_id.get(call_id or "")
        if name:
            native["tool_name"] = name
        if call_id:
            native["tool_call_id"] = call_id
    return native


def _native_content(content: Any) -> tuple[str, list[str]]:
    """Text and raw-base64 images of an OpenAI content (string, null or parts array).

    Ollama splits a parts array into one message per part; joining the text parts keeps
    one message per turn, which is what the person wrote.
    """
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or an array of parts", param="messages")
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            images.append(_native_image(part.get("image_url")))
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", param="messages")
    return "\n".join(texts), images


def _native_image(image_url: Any) -> str:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise InvalidRequest("image_url must have a url", param="messages")
    if url.startswith(("http://", "https://")):
        raise InvalidRequest(
            "image URLs are not currently supported, please use base64 encoded data instead",
            param="messages",
        )
    match = _DATA_URI.fullmatch(url)
    if not match:
        raise InvalidRequest("invalid image input", param="messages")
    data = match["data"]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid image input: bad base64 data", param="messages") from None
    return data


def _native_tool_call(index: int, call: Any, names_by_call_id: dict[str, str]) -> dict:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest("invalid tool call", param="messages")
    arguments = function.get("arguments") or "{}"
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise InvalidRequest("invalid tool call arguments", param="messages") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest("invalid tool call arguments", param="messages")
    call_id = call.get("id") or new_call_id()
    names_by_call_id[call_id] = function["name"]
    return {
        "id": call_id,
        "function": {"index": index, "name": function["name"], "arguments": arguments},
    }


def _native_options(body: dict) -> dict:
    options: dict[str, Any] = {}
    for name in _OPTION_FIELDS:  # absent stays absent (Ollama would force 1.0)
        if body.get(name) is not None:
            options[name] = body[name]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise InvalidRequest("max_tokens must be an integer", param="max_tokens")
        options["num_predict"] = max_tokens
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        options["stop"] = stop
    elif stop is not None:
        raise InvalidRequest("stop must be a string or an array of strings", param="stop")
    return options


def _native_format(response_format: Any) -> str | dict | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("json_schema.schema must be an object", param="response_format")
        return schema
    raise InvalidRequest(f"invalid response_format type {kind!r}", param="response_format")


def _native_think(body: dict) -> bool | str | None:
    effort = body.get("reasoning_effort")
    if effort is None and isinstance(body.get("reasoning"), dict):
        effort = body["reasoning"].get("effort")
    if effort is None:
        return None
    if effort not in _EFFORT_TO_THINK:
        raise InvalidRequest(f"invalid reasoning_effort {effort!r}", param="reasoning_effort")
    return _EFFORT_TO_THINK[effort]


# -- (b) native request -> OpenAI upstream ---------------------------------------------------


def native_to_openai_request(
    model: str,
    messages: list[dict],
    *,
    options: dict | None = None,
    tools: list | None = None,
    format: str | dict | None = None,
    think: bool | str | None = None,
    stream: bool = True,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
) -> dict:
    """The /v1/chat/completions body for a native chat request."""
    body: dict[str, Any] = {"model": model, "messages": openai_messages(messages), "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}  # real counts, not estimates
    body.update(_openai_options(options or {}))
    if tools:  # OpenAI rejects an empty tools array
        body["tools"] = tools
    for name, value in (("logprobs", logprobs), ("top_logprobs", top_logprobs)):
        if value is not None:  # the same fields in both protocols
            body[name] = value
    if format == "json":
        body["response_format"] = {"type": "json_object"}
    elif isinstance(format, dict):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": format},
        }
    elif format not in (None, ""):
        raise InvalidRequest(
            f'invalid format: {format!r}; expected "json" or a valid JSON Schema object',
            param="format",
        )
    # Levels map to reasoning_effort; a bare true/false leaves the model's default, since
    # non-reasoning OpenAI models reject the field outright.
    if isinstance(think, str):
        body["reasoning_effort"] = "high" if think == "max" else think
    return body


def openai_messages(messages: list[dict]) -> list[dict]:
    """Native messages as OpenAI messages (images as data URIs, arguments as strings)."""
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be an array", param="messages")
    pending_ids: dict[str, list[str]] = {}  # tool name -> ids of calls not yet answered
    return [_openai_message(message, pending_ids) for message in messages]


def _openai_message(message: dict, pending_ids: dict[str, list[str]]) -> dict:
    if not isinstance(message, dict) or not message.get("role"):
        raise InvalidRequest("each message needs a role", param="messages")
    role = message["role"]
    content = message.get("content") or ""
    out: dict[str, Any] = {"role": role}
    if message.get("images"):
        parts: list[dict] = [{"type": "text", "text": content}] if content else []
        parts += [
            {"type": "image_url", "image_url": {"url": _data_uri(image)}}
            for image in message["images"]
        ]
        out["content"] = parts
    else:
        out["content"] = content
    if message.get("tool_calls"):
        out["tool_calls"] = [_openai_tool_call(call, pending_ids) for call in message["tool_calls"]]
        out["content"] = content or None
    if role == "tool":
        call_id = message.get("tool_call_id")
        name = message.get("tool_name") or ""
        if not call_id and pending_ids.get(name):
            call_id = pending_ids[name].pop(0)
        out["tool_call_id"] = call_id or new_call_id()
        if name:
            out["name"] = name
    return out


def _openai_tool_call(call: dict, pending_ids: dict[str, list[str]]) -> dict:
    function = call.get("function") or {}
    name = function.get("name")
    if not name:
        raise InvalidRequest("invalid tool call: missing function name", param="messages")
    arguments = function.get("arguments", {})
    call_id = call.get("id") or new_call_id()
    pending_ids.setdefault(name, []).append(call_id)
    return {
        "id": call_id,
        "type": "function",
        "function": {
            "name": name,
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


def _data_uri(image: str) -> str:
    if not isinstance(image, str):
        raise InvalidRequest("images must be base64 strings", param="images")
    if image.startswith("data:"):
        return image
    mime = next((m for magic, m in _IMAGE_MAGIC.items() if image.startswith(magic)), "image/png")
    return f"data:{mime};base64,{image}"


def _openai_options(options: dict) -> dict:
    out: dict[str, Any] = {}
    for name in (*_OPTION_FIELDS, "stop"):
        if options.get(name) is not None:
            out[name] = options[name]
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and num_predict > 0:  # -1/-2 mean "no limit" natively
        out["max_tokens"] = num_predict
    return out


def generate_messages(
    prompt: str, *, system: str | None = None, images: list[str] | None = None
) -> list[dict]:
    """The chat messages that stand for a /api/generate call on a chat-only upstream."""
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": system})
    user: dict[str, Any] = {"role": "user", "content": prompt}
    if images:
        user["images"] = images
    messages.append(user)
    return messages
