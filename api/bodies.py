"""What both doors' request checks share: reading a body as JSON fit for model servers, the
JSON kinds a field may hold, and the ranges of the numbers both doors take.

Each door words its own refusals of bad JSON, types and ranges (`api.validation` as Ollama's
server, `api.openai_validation` as OpenAI's API); the values they admit come from here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from api.errors import ApiError

MAX_DEPTH = 100  # levels of arrays and objects in a request body
EMBED_MAX_INPUTS = 2048  # as OpenAI's embeddings API
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


INT64 = Range(-(2**63), 2**63 - 1)  # Go's int: seeds
COUNT = Range(0, INT32_MAX)
POSITIVE_COUNT = Range(1, INT32_MAX)  # sizes and limits: context, batch, tokens, dimensions
PROBABILITY = Range(0, 1)
PENALTY = Range(-2, 2)  # presence and frequency penalties, as OpenAI defines them
TOP_LOGPROBS = Range(0, 20)


def fits(kind: str, value: Any) -> bool:
    """Whether `value` is of the JSON `kind`: "string", "boolean", "integer" (a bool is not
    one), "number", "array" or "object"."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def body_json(request: HttpRequest) -> Any:
    """The JSON value of the request's body: a 400 ApiError when there is none, ValueError
    (as from `parse_json`) when it is not JSON fit for a model server."""
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "missing request body")
    return parse_json(raw)


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
