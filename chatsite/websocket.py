"""The websocket's same-origin rule."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings


class SameOriginValidator:
    """Refuse a websocket whose Origin is not this site's own `scheme://host[:port]` (or one of
    CSRF_TRUSTED_ORIGINS): the rule Django's CSRF check applies to forms.

    Channels' AllowedHostsOriginValidator (which stays in front of this) compares host names
    only, so a page served on another port of the same host could open a chat socket with
    the visitor's cookies.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", ()))
        origin = headers.get(b"origin", b"").decode("latin1")
        host = headers.get(b"host", b"").decode("latin1")
        # Behind a TLS proxy Daphne's --proxy-headers makes the scheme wss.
        scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        if origin != f"{scheme}://{host}" and origin not in settings.CSRF_TRUSTED_ORIGINS:
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
