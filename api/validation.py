"""Request bodies checked the way Ollama's server checks them, so clients get the same 400s.

Go decodes into typed structs: a value of the wrong JSON type is `json: cannot unmarshal
<type> into Go struct field <Struct>.<field> of type <go type>`; unknown fields are
ignored; `null` leaves a field unset. Nothing here ever raises anything but ApiError.

Beyond Ollama's own checks, values no model server should see are refused with a 400 that
names them: numbers outside the range their meaning allows (the model runner keeps counts
in 32-bit integers), unknown message roles, and bodies nested deeper than `MAX_DEPTH`.
`parse_json` (both doors) refuses non-finite numbers, which Python's json would accept.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from api.errors import ApiError

THINK_LEVELS = ("low", "medium", "high", "max")
EMBED_MAX_INPUTS = 2048  # as OpenAI's embeddings API
ROLES = ("system", "user", "assistant", "tool")
MAX_DEPTH = 100  # levels of arrays and objects in a request body
INT32_MAX = 2**31 - 1  # counts and token ids are 32-bit integers in the model runners
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class Range:
    """The values a number may take: `low` to `high` (None: unbounded), both included
    unless `low_included` is false."""

    low: float | None = None
    high: float | None = None
    low_included: bool = True

    def admits(self, value: float) -> bool:
        too_low = self.low is not None and (
            value < self.low if self.low_included else value <= self.low
        )
        return not too_low and (self.high is None or value <= self.high)

    def describe(self) -> str:
        """The range in words, for a message: `between 0 and 1`, `at least 0`."""
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        if self.low is not None:
            return f"at least {self.low}" if self.low_included else f"greater than {self.low}"
        return f"at most {self.high}"


INT64 = Range(-(2**63), 2**63 - 1)  # Go's int
COUNT = Range(0, INT32_MAX)
PROBABILITY = Range(0, 1)
PENALTY = Range(-2, 2)  # presence and frequency penalties, as OpenAI defines them
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
# option -> (type named in the message, range of a number); unknown options pass through.
OPTIONS: dict[str, tuple[str, Range | None]] = {
    "num_keep": ("integer", Range(-1, INT32_MAX)),  # -1: keep the whole prompt
    "seed": ("integer", INT64),
    "num_predict": ("integer", Range(-2, INT32_MAX)),  # -1: no limit, -2: fill the context
    "top_k": ("integer", COUNT),
    "repeat_last_n": ("integer", Range(-1, INT32_MAX)),  # -1: the whole context
    "num_ctx": ("integer", Range(1, INT32_MAX)),
    "num_batch": ("integer", Range(1, INT32_MAX)),
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
FIELD_RANGES = {"top_logprobs": Range(0, 20), "dimensions": Range(1, INT32_MAX)}


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


def parse_json(raw: bytes) -> Any:
    """A request body's JSON value, fit to pass on to a model server.

    Raises ValueError for text that is not JSON, including NaN, Infinity and numbers too
    large for a double (Python's json would accept them; Go's and OpenAI's would not), and
    for arrays and objects nested deeper than MAX_DEPTH. Lone surrogate escapes
    (`"\\ud800"`, half of a character, as a client that cut a string in the middle of an
    emoji sends) become U+FFFD, as Go's decoder makes them, so the text encodes as UTF-8.
    """
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep() from None
    # Deeper than MAX_DEPTH needs more brackets than that; counting them is cheap.
    deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(raw) is not None
    return _checked(value, 1, surrogates) if deep or surrogates else value


def _too_deep() -> ValueError:
    return ValueError(f"arrays and objects nested deeper than {MAX_DEPTH} levels")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a valid JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _checked(value: Any, depth: int, repair: bool) -> Any:
    """`value` with its depth checked and, when `repair`, lone surrogates replaced."""
    if isinstance(value, str):
        return _without_lone_surrogates(value) if repair else value
    if isinstance(value, list):
        if depth > MAX_DEPTH:
            raise _too_deep()
        return [_checked(item, depth + 1, repair) for item in value]
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise _too_deep()
        return {
            _checked(name, depth, repair): _checked(item, depth + 1, repair)
            for name, item in value.items()
        }
    return value


def _without_lone_surrogates(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def read_body(request: HttpRequest, struct: str) -> dict:
    """The JSON object of the request; 400 for none, bad JSON, or not an object."""
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "missing request body")
    try:
        body = parse_json(raw)
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
        return _fits("int", value) or (isinstance(value, float) and value.is_integer())
    if kind == "float":
        return json_type(value) == "number"
    if kind == "boolean":
        return isinstance(value, bool)
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
