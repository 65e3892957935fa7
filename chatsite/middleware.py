"""Project-wide middleware."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

# A caller's own request id is echoed only when it is a plain token.
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def request_id(incoming: str) -> str:
    """The caller's id when it is a plain token, else a new one."""
    return incoming if CLIENT_REQUEST_ID.fullmatch(incoming) else f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Give every request an id (from `X-Request-Id` or new) and echo it on the response."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request.request_id = request_id(request.headers.get("X-Request-Id", ""))
        response = await self.get_response(request)
        response.headers.setdefault("x-request-id", request.request_id)
        return response
