"""The two wire formats the API door speaks: Ollama's under /api/, OpenAI's under /v1/.

Each format owns its path prefix and says how a refusal looks on its wire: the error body,
the words of a 401 and a 404, and how a stream that broke after it started ends. The rest
of the door passes the request's format along. Shapes: docs/api.md.
"""

from __future__ import annotations

import json

from django.http import HttpResponse

from api import ndjson, sse
from api.errors import JSON, ApiError, engine_error
from llm.errors import LLMError


class WireFormat:
    """What differs between the two APIs: paths, error shapes and the words of refusals."""

    name = ""
    prefix = ""  # every path of the format starts with it

    def route(self, path: str) -> str:
        """A URL pattern of this format (`chat` -> `api/chat`), for a URLconf."""
        return self.prefix.removeprefix("/") + path

    def error_body(self, error: ApiError) -> dict:
        """The JSON body of a refusal."""
        raise NotImplementedError

    def error_response(self, error: ApiError) -> HttpResponse:
        """A refusal as a JSON response with its status and headers."""
        body = json.dumps(self.error_body(error))
        response = HttpResponse(body, status=error.status, content_type=JSON)
        for name, value in error.headers.items():
            response[name] = value
        return response

    def unauthorized(self, presented: str | None) -> ApiError:
        """401 for a missing, wrong, revoked or expired key (which one is never said)."""
        raise NotImplementedError

    def model_not_found(self, model: str) -> ApiError:
        """404 for a model nobody serves, or one this key may not use (not revealed)."""
        raise NotImplementedError

    def engine_error(self, exc: LLMError, model: str) -> ApiError:
        """The answer to an engine error, with a message that names the model."""
        return engine_error(exc, model, self.model_not_found)

    def stream_error(self, exc: BaseException, model: str) -> bytes:
        """The last line or event of a stream that failed after it started."""
        raise NotImplementedError

    def _in_stream(self, exc: BaseException, model: str) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        if isinstance(exc, LLMError):
            return self.engine_error(exc, model)
        message = f"model '{model}': the reply failed on the server"
        return ApiError(500, message, code="server_error")


class OllamaFormat(WireFormat):
    """Ollama's API: `{"error": "..."}` bodies, NDJSON streams."""

    name = "ollama"
    prefix = "/api/"

    def error_body(self, error: ApiError) -> dict:
        return {"error": error.message}

    def unauthorized(self, presented: str | None) -> ApiError:
        return ApiError(401, "unauthorized", code="invalid_api_key")

    def model_not_found(self, model: str) -> ApiError:
        return ApiError(404, f"model '{model}' not found", code="model_not_found", param="model")

    def stream_error(self, exc: BaseException, model: str) -> bytes:
        return ndjson.error_line(self._in_stream(exc, model).message)


class OpenAIFormat(WireFormat):
    """OpenAI's API: `{"error": {message, type, param, code}}` bodies, SSE streams."""

    name = "openai"
    prefix = "/v1/"

    def error_body(self, error: ApiError) -> dict:
        return {
            "error": {
                "message": error.message,
                "type": error.openai_type,
                "param": error.param,
                "code": error.code,
            }
        }

    def unauthorized(self, presented: str | None) -> ApiError:
        if presented:
            shown = f"{presented[:3]}…{presented[-4:]}" if len(presented) > 8 else "…"
            message = (
                f"Incorrect API key provided: {shown}. Create a key on this site's API keys page."
            )
        else:
            message = (
                "Incorrect API key provided: none. Send it as 'Authorization: Bearer <key>'; "
                "create one on this site's API keys page."
            )
        return ApiError(401, message, code="invalid_api_key", type="invalid_request_error")

    def model_not_found(self, model: str) -> ApiError:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return ApiError(404, message, code="model_not_found", param="model")

    def stream_error(self, exc: BaseException, model: str) -> bytes:
        return sse.error_event(self.error_body(self._in_stream(exc, model)))


OLLAMA = OllamaFormat()
OPENAI = OpenAIFormat()
FORMATS = (OLLAMA, OPENAI)


def for_path(path: str) -> WireFormat | None:
    """The format whose prefix `path` starts with; None for a path outside the API."""
    for wire in FORMATS:
        if path.startswith(wire.prefix):
            return wire
    return None


def serves(path: str) -> bool:
    """Whether a request path belongs to the API door."""
    return for_path(path) is not None
