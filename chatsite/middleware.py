"""Project-wide middleware."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase


class RequestIdMiddleware:
    """Give every request an id (from `X-Request-Id` or new) and echo it on the response."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = (
            incoming
            if 8 <= len(incoming) <= 64 and incoming.isascii()
            else (f"req_{uuid.uuid4().hex}")
        )
        response = await self.get_response(request)
        response.headers.setdefault("x-request-id", request.request_id)
        return response
