"""Errors of the platform API, in the shape each protocol expects (PROTOCOLS.md 1.4, 2.4).

One `ApiError` carries everything both shapes need; the Ollama door renders it as
`{"error": "..."}`, the OpenAI door as `{"error": {message, type, param, code}}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpResponse

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

    def ollama_body(self) -> dict:
        return {"error": self.message}

    def openai_body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def ollama_response(self) -> HttpResponse:
        return self._response(self.ollama_body())

    def openai_response(self) -> HttpResponse:
        return self._response(self.openai_body())

    def _response(self, body: dict) -> HttpResponse:
        response = HttpResponse(json.dumps(body), status=self.status, content_type=JSON)
        for name, value in self.headers.items():
            response[name] = value
        return response


def body_too_large() -> ApiError:
    """A request body over DATA_UPLOAD_MAX_MEMORY_SIZE (MAX_REQUEST_MB)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
    return ApiError(413, f"request body too large: the limit is {limit} MiB")


def unauthorized(openai: bool, presented: str | None) -> ApiError:
    """401 for a missing, wrong, revoked or expired key (which one is never said)."""
    if not openai:
        return ApiError(401, "unauthorized", code="invalid_api_key")
    if presented:
        shown = f"{presented[:3]}…{presented[-4:]}" if len(presented) > 8 else "…"
        message = f"Incorrect API key provided: {shown}. Create a key on this site's API keys page."
    else:
        message = (
            "Incorrect API key provided: none. Send it as 'Authorization: Bearer <key>'; "
            "create one on this site's API keys page."
        )
    return ApiError(401, message, code="invalid_api_key", type="invalid_request_error")


def model_not_found(model: str, openai: bool) -> ApiError:
    """404 for a model nobody serves, or one this key may not use (not revealed)."""
    if openai:
        message = f"The model `{model}` does not exist or you do not have access to it."
    else:
        message = f"model '{model}' not found"
    return ApiError(404, message, code="model_not_found", param="model")


def from_refusal(refused: Refused) -> ApiError:
    """429 from the meter: a spent budget must not be retried soon, a rate limit may."""
    headers = {"Retry-After": str(refused.retry_after)}
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


def from_engine(exc: LLMError, model: str, openai: bool) -> ApiError:
    """The API's answer to an engine error, with a message that names the model."""
    if isinstance(exc, ModelNotFound):
        return model_not_found(exc.model or model, openai)
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


def in_stream(exc: BaseException, model: str, openai: bool) -> ApiError:
    """The error sent in-band once a stream has started."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, LLMError):
        return from_engine(exc, model, openai)
    return ApiError(500, f"model '{model}': the reply failed on the server", code="server_error")
