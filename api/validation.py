"""Request bodies checked the way Ollama's server checks them, so clients get the same 400s.

Go decodes into typed structs: a value of the wrong JSON type is `json: cannot unmarshal
<type> into Go struct field <Struct>.<field> of type <go type>`; unknown fields are
ignored; `null` leaves a field unset. Nothing here ever raises anything but ApiError.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from django.http import HttpRequest

from api.errors import ApiError

THINK_LEVELS = ("low", "medium", "high", "max")
EMBED_MAX_INPUTS = 2048  # as OpenAI's embeddings API
_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+|[-+]?0")

# field -> (kind, Go type named in the message)
CHAT_FIELDS = {
    "model": ("string", "string"),
    "messages": ("array", "[]api.Message"),
    "stream": ("bool", "bool"),
    "options": ("object", "map[string]interface {}"),
    "tools": ("array", "api.Tools"),
    "truncate": ("bool", "bool"),
    "shift": ("bool", "bool"),
    "logprobs": ("bool", "bool"),
    "top_logprobs": ("int", "int"),
}
GENERATE_FIELDS = {
    "model": ("string", "string"),
    "prompt": ("string", "string"),
    "suffix": ("string", "string"),
    "system": ("string", "string"),
    "template": ("string", "string"),
    "context": ("ints", "[]int"),
    "stream": ("bool", "bool"),
    "raw": ("bool", "bool"),
    "images": ("array", "[]api.ImageData"),
    "options": ("object", "map[string]interface {}"),
    "truncate": ("bool", "bool"),
    "shift": ("bool", "bool"),
    "logprobs": ("bool", "bool"),
    "top_logprobs": ("int", "int"),
}
SHOW_FIELDS = {
    "model": ("string", "string"),
    "name": ("string", "string"),
    "verbose": ("bool", "bool"),
}
EMBED_FIELDS = {
    "model": ("string", "string"),
    "truncate": ("bool", "bool"),
    "options": ("object", "map[string]interface {}"),
    "dimensions": ("int", "int"),
}
MESSAGE_FIELDS = {
    "role": ("string", "string"),
    "content": ("string", "string"),
    "thinking": ("string", "string"),
    "images": ("array", "[]api.ImageData"),
    "tool_calls": ("array", "[]api.ToolCall"),
    "tool_name": ("string", "string"),
    "tool_call_id": ("string", "string"),
}
_INT_OPTIONS = {
    "num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
    "num_gpu", "main_gpu", "num_thread", "draft_num_predict",
}  # fmt: skip
_FLOAT_OPTIONS = {
    "top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
    "frequency_penalty",
}  # fmt: skip
_BOOL_OPTIONS = {"use_mmap", "numa", "low_vram", "vocab_only", "use_mlock"}


def json_type(value: Any) -> str:
    """The JSON type name Go's decoder uses in its messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def read_body(request: HttpRequest, struct: str) -> dict:
    """The JSON object of the request; 400 for none, bad JSON, or not an object."""
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid character in request body: not UTF-8") from None
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(
            400, f"json: cannot unmarshal {json_type(body)} into Go value of type api.{struct}"
        )
    return body


def _fits(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "ints":
        return isinstance(value, list) and all(_fits("int", v) for v in value)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def check_fields(body: dict, fields: dict[str, tuple[str, str]], struct: str) -> None:
    """400 for the first field whose JSON type does not fit its Go type."""
    for name, (kind, go_type) in fields.items():
        value = body.get(name)
        if value is not None and not _fits(kind, value):
            shown = json_type(value)
            if kind == "ints" and isinstance(value, list):
                shown = next(json_type(v) for v in value if not _fits("int", v))
            raise ApiError(
                400,
                f"json: cannot unmarshal {shown} into Go struct field "
                f"{struct}.{name} of type {go_type}",
                param=name,
            )


def check_messages(messages: list) -> list[dict]:
    """Native messages, type-checked, roles lower-cased (as Message.UnmarshalJSON does)."""
    out = []
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError(
                400,
                f"json: cannot unmarshal {json_type(message)} into Go struct field "
                "ChatRequest.messages of type api.Message",
                param="messages",
            )
        check_fields(message, MESSAGE_FIELDS, "ChatRequest.messages")
        check_images(message.get("images"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(
                function.get("arguments", {}), dict
            ):
                raise ApiError(
                    400,
                    "json: cannot unmarshal tool_calls: function.arguments must be an object",
                    param="messages",
                )
        if isinstance(message.get("role"), str):
            message = {**message, "role": message["role"].lower()}
        out.append(message)
    return out


def check_images(images: list | None) -> None:
    """Images are raw base64 (no `data:` prefix), as Go decodes them into bytes."""
    for i, image in enumerate(images or []):
        if not isinstance(image, str):
            raise ApiError(
                400, f"json: cannot unmarshal {json_type(image)} into images[{i}] of type string"
            )
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"illegal base64 data in images[{i}]", param="images") from None


def check_options(options: dict | None) -> None:
    """Known options must have their type; unknown ones pass through untouched."""
    for name, value in (options or {}).items():
        if value is None:
            continue
        if name in _INT_OPTIONS and not _fits("int", value):
            if not (isinstance(value, float) and value.is_integer()):
                raise ApiError(400, f'option "{name}" must be of type integer', param="options")
        elif name in _FLOAT_OPTIONS and json_type(value) != "number":
            raise ApiError(400, f'option "{name}" must be of type float', param="options")
        elif name in _BOOL_OPTIONS and not isinstance(value, bool):
            raise ApiError(400, f'option "{name}" must be of type boolean', param="options")
        elif name == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise ApiError(400, 'option "stop" must be of type array of strings', param="options")


def check_think(think: Any) -> None:
    """`think` is a bool or one of the levels."""
    if think is None or isinstance(think, bool) or think in THINK_LEVELS:
        return
    shown = json.dumps(think)
    raise ApiError(
        400,
        f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)',
        param="think",
    )


def check_format(value: Any) -> str | dict | None:
    """`"json"` or a JSON Schema object; `""` and null mean no format."""
    if value in (None, ""):
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise ApiError(
        400,
        f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object',
        param="format",
    )


def check_keep_alive(value: Any) -> None:
    """A number of seconds or a Go duration string."""
    if value is None or json_type(value) == "number":
        return
    if isinstance(value, str) and _DURATION.fullmatch(value):
        return
    if isinstance(value, str):
        raise ApiError(400, f'time: invalid duration "{value}"', param="keep_alive")
    raise ApiError(
        400,
        f"json: cannot unmarshal {json_type(value)} into keep_alive of type api.Duration",
        param="keep_alive",
    )


def check_embed_input(value: Any) -> list[str]:
    """The texts of an embed request's `input`: a string or an array of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if len(value) > EMBED_MAX_INPUTS:
            message = f"at most {EMBED_MAX_INPUTS} inputs per request, got {len(value)}"
            raise ApiError(400, message, param="input")
        return value
    raise ApiError(400, "invalid input type", param="input")


def check_top_logprobs(body: dict) -> None:
    value = body.get("top_logprobs")
    if value is not None and not 0 <= value <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20", param="top_logprobs")
