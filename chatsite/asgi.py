"""ASGI entry point: Django for HTTP, Channels for websockets."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Build the Django app first: it sets up the app registry that the routing imports need.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from api import asgi as api_asgi  # noqa: E402
from chatsite.websocket import SameOriginValidator  # noqa: E402
from conversations import recovery  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402


async def http_application(scope: dict, receive: object, send: object) -> None:
    """Pages go through Django's handler; the platform API through its own lean door."""
    if api_asgi.serves(scope["path"]):
        await api_asgi.application(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


router = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": AllowedHostsOriginValidator(
            SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)


async def application(scope: dict, receive: object, send: object) -> None:
    """The site, with this worker's sweeper for replies of dead workers running."""
    recovery.ensure_sweeping()
    await router(scope, receive, send)


# Everything loaded so far (Django, the apps, the URL map, the libraries) lives as long as
# the process: move it out of the collector's sight, so that full collections, which would
# scan it all, do not stall the worker mid-stream (bench/README.md).
gc.collect()
gc.freeze()
