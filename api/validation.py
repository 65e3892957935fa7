"""Request bodies checked the way Ollama's server checks them, so clients get the same 400s.

Go decodes into typed structs: a value of the wrong JSON type is `json: cannot unmarshal
<type> into Go struct field <Struct>.<field> of type <go type>`; unknown fields are
ignored; `null` leaves a field unset. Nothing here ever raises anything but ApiError.

Beyond Ollama's own checks, values no model server should see are refused with a 400 that
names them: numbers outside the range their meaning allows (`api.bodies`, shared with the
OpenAI door), unknown message roles, and bodies `api.bodies.parse_json` refuses.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from django.http import HttpRequest

from api.bodies import (
    COUNT,
    EMBED_MAX_INPUTS,
    INT32_MAX,
    INT64,
    PENALTY,
    POSITIVE_COUNT,
    PROBABILITY,
    TOP_LOGPROBS,
    Range,
    body_json,
    fits,
)
from api.errors import ApiError

THINK_LEVELS = ("low", "medium", "high", "max")
ROLES = ("system", "user", "assistant", "tool")
_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+|[-+]?0")

# field -> (JSON kind, as `api.bodies.fits` or "ints"; Go type named in the message)
CHAT_FIELDS = {
    "model": ("string", "string"),
    "messages": ("array", "[]api.Message"),
    "stream": ("boolean", "bool"),
    "options": ("object", "map[string]interface {}"),
    "tools": ("array", "api.Tools"),
    "truncate": ("boolean", "bool"),
    "shift": ("boolean", "bool"),
    "logprobs": ("boolean", "bool"),
    "top_logprobs": ("integer", "int"),
}
GENERATE_FIELDS = {
    "model": ("string", "string"),
    "prompt": ("string", "string"),
    "suffix": ("string", "string"),
    "system": ("string", "string"),
    "template": ("string", "string"),
    "context": ("ints", "[]int"),
    "stream": ("boolean", "bool"),
    "raw": ("boolean", "bool"),
    "images": ("array", "[]api.ImageData"),
    "options": ("object", "map[string]interface {}"),
    "truncate": ("boolean", "bool"),
    "shift": ("boolean", "bool"),
    "logprobs": ("boolean", "bool"),
    "top_logprobs": ("integer", "int"),
}
SHOW_FIELDS = {
    "model": ("string", "string"),
    "name": ("string", "string"),
    "verbose": ("boolean", "bool"),
}
EMBED_FIELDS = {
    "model": ("string", "string"),
    "truncate": ("boolean", "bool"),
    "options": ("object", "map[string]interface {}"),
    "dimensions": ("integer", "int"),
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
# option -> (type named in the message, range of a number); unknown options pass through.
OPTIONS: dict[str, tuple[str, Range | None]] = {
    "num_keep": ("integer", Range(-1, INT32_MAX)),  # -1: keep the whole prompt
    "seed": ("integer", INT64),
    "num_predict": ("integer", Range(-2, INT32_MAX)),  # -1: no limit, -2: fill the context
    "top_k": ("integer", COUNT),
    "repeat_last_n": ("integer", Range(-1, INT32_MAX)),  # -1: the whole context
    "num_ctx": ("integer", POSITIVE_COUNT),
    "num_batch": ("integer", POSITIVE_COUNT),
    "num_gpu": ("integer", Range(-1, INT32_MAX)),  # -1: the server decides
    "main_gpu": ("integer", COUNT),
    "num_thread": ("integer", COUNT),  # 0: the server decides
    "draft_num_predict": ("integer", COUNT),
    "top_p": ("float", PROBABILITY),
    "min_p": ("float", PROBABILITY),
    "typical_p": ("float", PROBABILITY),
    "temperature": ("float", Range(0)),
    "repeat_penalty": ("float", Range(0, low_included=False)),  # logits are divided by it
    "presence_penalty": ("float", PENALTY),
    "frequency_penalty": ("float", PENALTY),
    "use_mmap": ("boolean", None),
    "numa": ("boolean", None),
    "low_vram": ("boolean", None),
    "vocab_only": ("boolean", None),
    "use_mlock": ("boolean", None),
    "stop": ("array of strings", None),
}
# Top-level numbers of the requests (their JSON types are checked with the fields).
FIELD_RANGES = {"top_logprobs": TOP_LOGPROBS, "dimensions": POSITIVE_COUNT}


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
    try:
        body = body_json(request)
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
    if kind == "ints":
        return isinstance(value, list) and all(fits("integer", v) for v in value)
    return fits(kind, value)


def check_fields(body: dict, fields: dict[str, tuple[str, str]], struct: str) -> None:
    """400 for the first field whose JSON type does not fit its Go type."""
    for name, (kind, go_type) in fields.items():
        value = body.get(name)
        if value is not None and not _fits(kind, value):
            shown = json_type(value)
            if kind == "ints" and isinstance(value, list):
                shown = next(json_type(v) for v in value if not fits("integer", v))
            raise ApiError(
                400,
                f"json: cannot unmarshal {shown} into Go struct field "
                f"{struct}.{name} of type {go_type}",
                param=name,
            )


def check_ranges(body: dict, fields: dict[str, tuple[str, str]]) -> None:
    """400 for a top-level number of the request outside its range, or a bad token id."""
    for name, allowed in FIELD_RANGES.items():
        value = body.get(name)
        if name in fields and value is not None and not allowed.admits(value):
            raise ApiError(400, f"{name} must be {allowed.describe()}, got {value}", param=name)
    if "context" in fields:
        for token in body.get("context") or ():
            if not COUNT.admits(token):
                message = f"context must hold token ids {COUNT.describe()}, got {token}"
                raise ApiError(400, message, param="context")


def check_messages(messages: list) -> list[dict]:
    """Native messages, type-checked, roles lower-cased (as Message.UnmarshalJSON does)."""
    out = []
    for index, message in enumerate(messages):
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
        role = message.get("role")
        if isinstance(role, str):
            message = {**message, "role": role.lower()}
        if message.get("role") not in ROLES:
            known = ", ".join(f'"{name}"' for name in ROLES)
            raise ApiError(
                400,
                f"invalid role {json.dumps(role)} in messages[{index}]: expected one of {known}",
                param="messages",
            )
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
    """Known options must have their type and range; unknown ones pass through untouched."""
    for name, value in (options or {}).items():
        if value is None or name not in OPTIONS:
            continue
        kind, allowed = OPTIONS[name]
        if not _option_fits(kind, value):
            raise ApiError(400, f'option "{name}" must be of type {kind}', param="options")
        if allowed is not None and not allowed.admits(value):
            raise ApiError(
                400,
                f'option "{name}" must be {allowed.describe()}, got {json.dumps(value)}',
                param="options",
            )


def _option_fits(kind: str, value: Any) -> bool:
    if kind == "integer":  # Ollama truncates a whole float into an integer option
        return fits("integer", value) or (isinstance(value, float) and value.is_integer())
    if kind == "float":
        return fits("number", value)
    if kind == "boolean":
        return fits("boolean", value)
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


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
