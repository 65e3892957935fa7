"""What both protocol clients share: sending, typed errors, timeouts and the read loop.

A protocol client builds an `UpstreamCall` (URL, body, headers and a parser); `run_call`
does the I/O and the parser turns bytes into events. Parsers are plain objects with no
I/O, so there is exactly one async generator between the socket and the caller.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from llm.context import request_id
from llm.errors import (
    LLMError,
    ModelNotFound,
    UpstreamError,
    UpstreamInterrupted,
    UpstreamUnavailable,
)
from llm.events import Embedded, Event, Timings
from llm.http import chunk_timeout, connect_timeout, first_byte_timeout, model_request, send
from llm.network import AddressRefused
from llm.tokens import TokenUsage, estimate_tokens, estimated_usage

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024
EMBED_MAX_ANSWER = 256 * 2**20  # 2,048 inputs of 4,096 floats as JSON stay well under it
MAX_MESSAGE = 500


class Parser(Protocol):
    """Turns one response into events."""

    started_ns: int

    def feed(self, chunk: bytes) -> list[Event]: ...
    def finish(self) -> list[Event]: ...
    def whole(self, data: Any) -> list[Event]: ...
    def interrupted(self, reason: str) -> UpstreamInterrupted: ...


@dataclass
class UpstreamCall:
    """One request to an upstream, ready to send."""

    url: str
    body: dict
    headers: dict[str, str]
    model: str  # the public name, for ModelNotFound
    stream: bool
    parser: Parser
    extra: dict[str, Any] = field(default_factory=dict)
    max_body: int = 2**31  # bytes of a whole (not streamed) answer


def truncate(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` cut to `limit` characters, marked when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_message(data: Any, fallback: str = "") -> str:
    """The message of an error body: {"error": "..."} or {"error": {"message": ...}}."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, str):
            return truncate(error)
        if isinstance(error, dict) and error.get("message"):
            return truncate(str(error["message"]))
        if data.get("message"):
            return truncate(str(data["message"]))
    return truncate(fallback)


def describe(exc: BaseException) -> str:
    """A transport failure in the HTTP library's words, for the log and admins."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def unavailable(call: UpstreamCall, exc: httpx.HTTPError) -> UpstreamUnavailable:
    """The error of a request that got no response, in plain words."""
    if isinstance(exc, httpx.ReadTimeout):
        message = f"the model server did not start answering within {first_byte_timeout():g} s"
    elif isinstance(exc, httpx.ConnectTimeout):
        message = f"the model server could not be reached within {connect_timeout():g} s"
    elif isinstance(exc, httpx.PoolTimeout):
        message = "too many requests to the model servers at once; try again shortly"
    elif isinstance(exc.__cause__, AddressRefused):
        message = "the model server's address is not allowed by this site's network settings"
    elif isinstance(exc, httpx.ConnectError):
        message = "the model server could not be reached"
    elif isinstance(exc, httpx.TimeoutException):
        message = "the model server stopped answering"
    else:
        message = "the model server closed the connection without answering"
    return UpstreamUnavailable(call.url, describe(exc), message)


def interrupted(call: UpstreamCall, exc: httpx.HTTPError) -> UpstreamInterrupted:
    """The error of a reply whose transport broke after it started, in plain words."""
    if isinstance(exc, httpx.TimeoutException):
        reason = f"the model server stopped answering (nothing for {chunk_timeout():g} s)"
    else:
        reason = "the model server closed the connection mid-reply"
    error = call.parser.interrupted(reason)
    error.detail = describe(exc)
    return error


async def _read_body(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= limit:
            break  # never hold a huge error page in memory
    return bytes(body)


async def raise_for_status(response: httpx.Response, call: UpstreamCall) -> None:
    """Raise the typed error of a non-2xx response."""
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        raise UpstreamError(
            status,
            f"the model server answered with a redirect (HTTP {status}), which is not "
            "followed: an admin must correct the connection's base URL",
            detail=f"redirects to {truncate(location, 200)}",
        )
    try:
        raw = await _read_body(response, MAX_ERROR_BODY)
    except (httpx.HTTPError, TimeoutError):
        raw = b""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = error_message(data, fallback=text) or response.reason_phrase or "error"
    if status == 404 and "model" in message.lower():
        raise ModelNotFound(call.model)
    if status in (401, 403):
        message = (
            f"the upstream refused the credentials (check the connection's API key): {message}"
        )
    raise UpstreamError(status, message, detail=f"HTTP {status}")


@asynccontextmanager
async def open_response(call: UpstreamCall) -> AsyncIterator[httpx.Response]:
    """Send `call` and yield its 2xx response; closes it (and the socket, if unread) on exit."""
    request = model_request(
        call.url,
        json.dumps(call.body).encode(),
        {"Content-Type": "application/json", **call.headers},
    )
    call.parser.started_ns = time.perf_counter_ns()
    try:
        response = await send(request)
    except httpx.HTTPError as exc:
        raise unavailable(call, exc) from None
    try:
        if not 200 <= response.status_code < 300:
            await raise_for_status(response, call)
        yield response
    finally:
        await response.aclose()


async def run_call(call: UpstreamCall) -> AsyncIterator[Event]:
    """Send `call` and yield its events; errors are typed (llm.errors) and logged."""
    try:
        async with open_response(call) as response:
            if not call.stream:
                for event in call.parser.whole(await _whole_json(response, call)):
                    yield event
                return
            parser = call.parser
            try:
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        yield event
            except httpx.HTTPError as exc:
                raise interrupted(call, exc) from None
            for event in parser.finish():
                yield event
    except (UpstreamUnavailable, UpstreamError, UpstreamInterrupted) as exc:
        _report(call, exc)
        raise


def _report(call: UpstreamCall, exc: LLMError) -> None:
    """Log an upstream failure with its address and detail; keep both out of its message."""
    exc.reword(without_address(exc.message, call.url))
    if isinstance(exc, UpstreamInterrupted):
        exc.reason = without_address(exc.reason, call.url)
    detail = f" ({exc.detail})" if exc.detail else ""
    request = request_id.get()
    log.warning(
        "upstream %s failed: %s%s%s",
        call.url,
        exc.message,
        detail,
        f" [request {request}]" if request else "",
        extra={"request_id": request, "upstream_url": call.url},
    )


def without_address(text: str, url: str) -> str:
    """`text` (an upstream's own message, say) on one line, the upstream's address taken out."""
    parts = urlsplit(url)
    path = r"(?:[^\s\"'<>]*[^\s\"'<>.,;:!?)])?"  # up to a space, quote or final stop
    hidden = [re.escape(f"{parts.scheme}://{parts.netloc}") + path]
    host = parts.hostname or ""
    if parts.port is not None:
        hidden.append(re.escape(parts.netloc) + r"(?!\d)")
    if _is_ip(host):
        hidden.append(r"(?<![\w.:])" + re.escape(host) + r"(?![\w:]|\.\d)")
    for pattern in hidden:
        text = re.sub(pattern, "the model server", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _whole_json(response: httpx.Response, call: UpstreamCall) -> Any:
    try:
        raw = await _read_body(response, call.max_body)
    except httpx.HTTPError as exc:
        raise interrupted(call, exc) from None
    if len(raw) >= call.max_body:
        limit = call.max_body // 2**20
        raise UpstreamError(502, f"the model server sent an answer over {limit} MiB")
    try:
        return json.loads(raw)
    except ValueError:
        raise UpstreamError(502, "the model server sent a response that is not JSON") from None


class TurnState:
    """What a parser remembers about the reply so far."""

    def __init__(self, prompt_estimate: int) -> None:
        self.prompt_estimate = prompt_estimate
        self.started_ns = time.perf_counter_ns()
        self.first_ns: int | None = None
        self.text: list[str] = []
        self.produced = False  # any event yielded yet

    def token_usage(self, counts: tuple[int, int] | None) -> TokenUsage:
        """The upstream's (prompt, completion) `counts` when it reported them, else estimates
        of the prompt and of the text so far."""
        if counts is not None:
            return TokenUsage(counts[0], counts[1], "upstream")
        return estimated_usage(self.prompt_estimate, len("".join(self.text)))

    def interrupted(self, reason: str) -> UpstreamInterrupted:
        """The error for a stream that broke after it started."""
        return UpstreamInterrupted("".join(self.text), reason)

    def in_band_error(self, message: str) -> LLMError:
        """An error the upstream reported inside a 200 response."""
        if self.produced:
            return UpstreamInterrupted("".join(self.text), message)
        return UpstreamError(500, message)


# What a protocol reads from an embeddings response: vectors, the prompt tokens it counted
# (None when it did not say), and its timings.
EmbedReading = tuple[Any, int | None, Timings]


def int_or_none(value: Any) -> int | None:
    """`value` if it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def embed_texts(input: str | list[str]) -> list[str]:
    """The texts of an embeddings input: one string or a list of them."""
    return [input] if isinstance(input, str) else input


def embed_call(
    url: str, body: dict, headers: dict[str, str], model: str, input: str | list[str], read: Any
) -> UpstreamCall:
    """A (never streamed) embeddings call, its answer bounded, interpreted by `read`."""
    parser = EmbedParser(embed_texts(input), read)
    return UpstreamCall(url, body, headers, model, False, parser, max_body=EMBED_MAX_ANSWER)  # type: ignore[arg-type]


class EmbedParser:
    """One embeddings response (never streamed) into one `Embedded` event."""

    def __init__(self, inputs: list[str], read: Callable[[dict], EmbedReading]) -> None:
        self.started_ns = time.perf_counter_ns()
        self.inputs = inputs
        self.read = read

    def feed(self, chunk: bytes) -> list[Event]:
        raise AssertionError("embeddings are not streamed")

    def finish(self) -> list[Event]:
        return []

    def whole(self, data: Any) -> list[Embedded]:  # type: ignore[override]
        if not isinstance(data, dict):
            raise UpstreamError(502, "the upstream sent a response that is not a JSON object")
        if "error" in data:
            raise UpstreamError(500, error_message(data))
        vectors, prompt_tokens, timings = self.read(data)
        if not (isinstance(vectors, list) and len(vectors) == len(self.inputs)):
            count = len(vectors) if isinstance(vectors, list) else 0
            raise UpstreamError(
                502, f"the upstream sent {count} embeddings for {len(self.inputs)} inputs"
            )
        if not all(isinstance(vector, list) and _numbers(vector) for vector in vectors):
            raise UpstreamError(502, "the upstream sent an embedding that is not numbers")
        if not prompt_tokens and any(self.inputs):  # 0 for real text: not counted
            prompt_tokens = None
        if prompt_tokens is None:
            estimate = sum(estimate_tokens(text) for text in self.inputs)
            return [Embedded(vectors, estimate, "estimated", timings)]
        return [Embedded(vectors, prompt_tokens, "upstream", timings)]

    def interrupted(self, reason: str) -> UpstreamInterrupted:
        return UpstreamInterrupted("", reason)


def _numbers(vector: list) -> bool:
    """Every element a finite float32-sized number (no bools, no nulls)."""
    return all(
        type(x) in (int, float) and -3.4e38 <= x <= 3.4e38  # NaN compares false: refused
        for x in vector
    )
