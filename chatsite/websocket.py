"""The websocket's same-origin rule, and what a send to a page already gone raises."""

from __future__ import annotations

from typing import Any

from autobahn.exception import Disconnected
from channels.security.websocket import WebsocketDenier
from django.conf import settings

# A frame sent to a socket its page is closing: the ASGI spec has servers raise an OSError;
# Daphne raises autobahn's Disconnected until it has seen the connection end. The
# disconnect that follows ends the consumer as usual.
CLIENT_GONE = (OSError, Disconnected)


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
        scheme = "https" if _is_secure(scope, headers) else "http"
        if origin != f"{scheme}://{host}" and origin not in settings.CSRF_TRUSTED_ORIGINS:
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def _is_secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    """Whether the page came over TLS: a wss scope, or (behind a TLS-terminating proxy)
    the SECURE_PROXY_SSL_HEADER that Django trusts for pages, since Daphne leaves a proxied
    websocket's scheme as plain ws."""
    if scope.get("scheme") in ("wss", "https"):
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy_header:
        return False
    name, secure_value = proxy_header
    header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin1")
    value = headers.get(header, b"").decode("latin1").split(",")[0].strip()
    return value == secure_value
