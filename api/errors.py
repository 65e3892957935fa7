"""Refusals of the platform API, and the engine's and the meter's errors turned into them.

An `ApiError` carries what both wire formats need (status, message, OpenAI's type, param
and code, extra headers); `api.formats` renders it in the shape of the request's format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from api import ratelimits
from llm.errors import (
    InvalidRequest,
    LLMError,
    ModelNotFound,
    UpstreamError,
    UpstreamInterrupted,
    UpstreamUnavailable,
)
from usage.services import Refused

JSON = "application/json; charset=utf-8"

# OpenAI's `type` for a status when nothing more precise applies.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_exceeded",
    501: "invalid_request_error",
}


@dataclass
class ApiError(Exception):
    """A refusal of the API, with its status and both protocols' details."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def openai_type(self) -> str:
        return self.type or _OPENAI_TYPES.get(self.status, "api_error")


def body_too_large() -> ApiError:
    """A request body over DATA_UPLOAD_MAX_MEMORY_SIZE (MAX_REQUEST_MB)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
    return ApiError(413, f"request body too large: the limit is {limit} MiB")


def from_refusal(refused: Refused) -> ApiError:
    """429 from the meter, naming the limit and its reset, with the x-ratelimit-* headers:
    a spent budget must not be retried soon, a rate limit may."""
    headers = {"Retry-After": str(refused.retry_after), **ratelimits.headers(refused.headroom)}
    if refused.is_quota:
        headers["x-should-retry"] = "false"
        return ApiError(
            429,
            f"You exceeded your current quota. {refused.message}",
            code="insufficient_quota",
            type="insufficient_quota",
            headers=headers,
        )
    return ApiError(
        429, refused.message, code="rate_limit_exceeded", type="requests", headers=headers
    )


def engine_error(exc: LLMError, model: str, not_found: Callable[[str], ApiError]) -> ApiError:
    """The API's answer to an engine error, with a message that names the model
    (`not_found` words the 404 of a model nobody serves in the request's format)."""
    if isinstance(exc, ModelNotFound):
        return not_found(exc.model or model)
    if isinstance(exc, InvalidRequest):
        return ApiError(400, exc.message, param=exc.param)
    if isinstance(exc, UpstreamUnavailable):
        return ApiError(
            502, f"model '{model}' is unavailable: {exc.message}", code="upstream_unavailable"
        )
    if isinstance(exc, UpstreamError):
        # The upstream's own client errors are the caller's to fix; its 401/403 and 5xx
        # are ours (a bad connection key, a crashed server), hence a gateway error.
        status = exc.status if 400 <= exc.status < 500 and exc.status not in (401, 403) else 502
        if exc.status == 501:  # Ollama: "this model does not support embeddings", and the like
            status = 400
        prefix = "" if status < 500 else f"model '{model}' failed: "
        return ApiError(
            status, prefix + exc.message, code=None if status < 500 else "upstream_error"
        )
    if isinstance(exc, UpstreamInterrupted):
        return ApiError(502, f"model '{model}': {exc.message}", code="upstream_interrupted")
    return ApiError(502, f"model '{model}': {exc.message}", code="upstream_error")
