"""Request bodies of the OpenAI door, checked the way OpenAI's API checks them.

A refusal is a 400 whose `param` names the field and whose `code` says what is wrong
(`invalid_type`, `decimal_above_max_value`, `invalid_value`, ...), in OpenAI's words. What
the translation to a native request (`llm.translate`) relies on is checked here; the
translation refuses the remaining shapes itself. Ranges are OpenAI's documented ones; counts
are bounded by the model runners' 32-bit integers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from api.bodies import (
    INT64,
    PENALTY,
    POSITIVE_COUNT,
    PROBABILITY,
    TOP_LOGPROBS,
    Range,
    body_json,
    fits,
    parse_json,
)
from api.errors import ApiError
from llm.errors import InvalidRequest
from llm.passthrough import refuse_unrelayable
from llm.translate import chosen_tools, tool_name

ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_CHOICES = ("none", "auto", "required")
TOOL_CHOICE_TYPES = ("function", "allowed_tools", "custom")
MAX_STOP = 4


@dataclass(frozen=True)
class Field:
    """What a top-level field may hold: a JSON type, and a range or a set of choices."""

    kind: str  # "number", "integer", "boolean", "string" or "object"
    allowed: Range | None = None
    choices: tuple[str, ...] = ()


CHAT_FIELDS = {
    "temperature": Field("number", Range(0, 2)),
    "top_p": Field("number", PROBABILITY),
    "presence_penalty": Field("number", PENALTY),
    "frequency_penalty": Field("number", PENALTY),
    "n": Field("integer", Range(1, 128)),
    "max_tokens": Field("integer", POSITIVE_COUNT),
    "max_completion_tokens": Field("integer", POSITIVE_COUNT),
    "seed": Field("integer", INT64),
    "top_logprobs": Field("integer", TOP_LOGPROBS),
    "logprobs": Field("boolean"),
    "stream": Field("boolean"),
    "parallel_tool_calls": Field("boolean"),
    "reasoning_effort": Field("string"),
    "stream_options": Field("object"),
    "response_format": Field("object"),
    "reasoning": Field("object"),
    "metadata": Field("object"),
    "logit_bias": Field("object"),
}
EMBEDDING_FIELDS = {
    "dimensions": Field("integer", POSITIVE_COUNT),
    "encoding_format": Field("string", choices=("float", "base64")),
}


def read_body(request: HttpRequest) -> dict:
    """The JSON object of the request (400 for none, bad JSON, or not an object)."""
    try:
        body = body_json(request)
    except ValueError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def check_chat(body: dict) -> None:
    """400 for a /v1/chat/completions value no model server should see."""
    check_fields(body, CHAT_FIELDS)
    if body.get("stream_options") is not None and not body.get("stream"):
        raise ApiError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    schema = (body.get("response_format") or {}).get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        raise ApiError(
            400, "'response_format.json_schema' must be an object", param="response_format"
        )
    effort = (body.get("reasoning") or {}).get("effort")
    if body.get("reasoning_effort") is None and effort is not None and not isinstance(effort, str):
        raise ApiError(400, "'reasoning_effort' must be a string", param="reasoning_effort")
    _check_messages(body.get("messages"))
    _check_stop(body.get("stop"))
    _check_tool_choice(body.get("tool_choice"))
    _check_chosen_tools(body.get("tool_choice"), body.get("tools"))
    _check_relayable(body)


def check_embeddings(body: dict) -> None:
    """400 for a /v1/embeddings option no model server should see."""
    check_fields(body, EMBEDDING_FIELDS)


def check_fields(body: dict, fields: dict[str, Field]) -> None:
    """400 for the first field of the wrong type or outside its range or choices."""
    for name, field in fields.items():
        value = body.get(name)
        if value is None:  # null is the field's default, as with OpenAI
            continue
        if not fits(field.kind, value):
            raise ApiError(
                400,
                f"Invalid type for '{name}': expected {_a(field.kind)}, "
                f"but got {_a(_kind_of(value))} instead.",
                param=name,
                code="invalid_type",
            )
        if field.allowed is not None:
            _check_range(name, value, field.kind, field.allowed)
        if field.choices and value not in field.choices:
            raise _invalid_value(value, field.choices, param=name)


def _check_range(name: str, value: float, kind: str, allowed: Range) -> None:
    if allowed.admits(value):
        return
    number = "integer" if kind == "integer" else "decimal"
    if allowed.low is not None and value < allowed.low:
        side, limit, code = "below minimum", f">= {allowed.low}", f"{number}_below_min_value"
    else:
        side, limit, code = "above maximum", f"<= {allowed.high}", f"{number}_above_max_value"
    raise ApiError(
        400,
        f"Invalid '{name}': {number} {side} value. "
        f"Expected a value {limit}, but got {json.dumps(value)} instead.",
        param=name,
        code=code,
    )


def _check_messages(messages: Any) -> None:
    """Known roles, and tool call arguments (JSON in a string) held to the body's rules."""
    if not isinstance(messages, list):
        return  # the translation refuses it
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if isinstance(role, str) and role.lower() not in ROLES:
            raise _invalid_value(role, ROLES, param=f"messages[{index}].role")
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str) and arguments:
                _check_arguments(arguments, param=f"messages[{index}].tool_calls")


def _check_arguments(arguments: str, *, param: str) -> None:
    try:
        parse_json(arguments.encode())
    except ValueError as exc:
        raise ApiError(400, f"invalid tool call arguments: {exc}", param=param) from None


def _check_stop(stop: Any) -> None:
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise ApiError(
            400,
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )


def _check_tool_choice(choice: Any) -> None:
    if choice is None or isinstance(choice, dict) or choice in TOOL_CHOICES:
        return
    if isinstance(choice, str):
        raise _invalid_value(choice, TOOL_CHOICES, param="tool_choice")
    raise ApiError(
        400,
        f"Invalid type for 'tool_choice': expected a string or an object, "
        f"but got {_a(_kind_of(choice))} instead.",
        param="tool_choice",
        code="invalid_type",
    )


def _check_chosen_tools(choice: Any, tools: Any) -> None:
    """A `tool_choice` that forces or names tools needs them among `tools`."""
    if choice in (None, "none", "auto"):
        return
    if isinstance(choice, dict) and choice.get("type") not in TOOL_CHOICE_TYPES:
        raise _invalid_value(str(choice.get("type")), TOOL_CHOICE_TYPES, param="tool_choice")
    offered = {tool_name(tool) for tool in tools} if isinstance(tools, list) else set()
    if not offered:
        raise _bad_tool_choice("'tool_choice' is only allowed when 'tools' are specified.")
    chosen = chosen_tools(choice)
    if chosen is not None and (not chosen or "" in chosen):
        raise _bad_tool_choice("it must name the tools it allows.")
    missing = sorted((chosen or set()) - offered)
    if missing:
        raise _bad_tool_choice(f"no tool named '{missing[0]}' in 'tools'.")


def _bad_tool_choice(reason: str) -> ApiError:
    return ApiError(
        400, f"Invalid value for 'tool_choice': {reason}", param="tool_choice", code="invalid_value"
    )


def _check_relayable(body: dict) -> None:
    """Fields whose answer (legacy function calls, audio) this door does not relay."""
    try:
        refuse_unrelayable(body)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message, param=exc.param, code="unsupported_parameter") from None


def _invalid_value(value: str, choices: tuple[str, ...], *, param: str) -> ApiError:
    listed = [f"'{choice}'" for choice in choices]
    supported = ", ".join(listed[:-1]) + f", and {listed[-1]}"
    return ApiError(
        400,
        f"Invalid value: '{value}'. Supported values are: {supported}.",
        param=param,
        code="invalid_value",
    )


def _kind_of(value: Any) -> str:
    """The JSON type of a value in OpenAI's words (a float is a "decimal number")."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
