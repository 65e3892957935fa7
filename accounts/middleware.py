"""Keep pending accounts on the waiting page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.urls import reverse

from api import formats as api_formats

# Paths a pending user may still open.
_ALLOWED_PREFIXES = ("/accounts/", "/static/", "/health")


class PendingUserMiddleware:
    """Send signed-in accounts that are waiting for approval to the waiting page."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # The platform API authenticates by key, not session: never touch the session there.
        if api_formats.serves(request.path) or request.path.startswith(_ALLOWED_PREFIXES):
            return await self.get_response(request)
        user = await request.auser()
        if user.is_authenticated and user.role == "pending":
            return redirect(reverse("accounts:pending"))
        return await self.get_response(request)
