"""The API door's own ASGI entry: Django's request, URL resolver and responses, without the
page middleware chain.

Why not a subclass of Django's `ASGIHandler` with no middleware (measured, bench/README.md):
its request signals and per-request thread context still cost thread hops on every request,
a clear loss in worker CPU per request and in the time the API adds to a first token.
Key auth needs no session, CSRF, messages or htmx, so `/api/` and `/v1/` come here instead;
the views, their decorators and their responses are the same ones Django's handler serves
(the test client still reaches them through it).

What this keeps of Django's handler: the body size limit, ALLOWED_HOSTS (the `Host` check
that CommonMiddleware makes for pages), a request id on every response, `nosniff`,
cancelling the view when the client disconnects (at once, rather than when the next write
fails), and closing the request's database connections afterwards.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from django.http import HttpResponseBase
from django.urls import Resolver404, resolve

from api import formats
from api.errors import ApiError, body_too_large
from api.formats import WireFormat
from chatsite.middleware import request_id as choose_request_id
from llm import context as llm_context

log = logging.getLogger(__name__)
# Where Django reports a refused Host header, so both doors' refusals are found together.
host_log = logging.getLogger("django.security.DisallowedHost")

URLCONF = "api.urls"


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


serves = formats.serves


async def application(scope: dict, receive: Any, send: Any) -> None:
    """Serve one API request."""
    request_id = _request_id(scope)
    wire = formats.for_path(scope["path"]) or formats.OLLAMA
    try:
        body = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    except ClientGone:
        return
    except BodyTooLarge:
        await _send(wire.error_response(body_too_large()), send, request_id)
        return
    request = ASGIRequest(scope, io.BytesIO(body))
    request.request_id = request_id
    llm_context.request_id.set(request_id)  # names the request in the engine's log lines
    refusal = _host_refusal(request)
    if refusal is not None:
        await _send(wire.error_response(refusal), send, request_id)
        return
    response = await _respond(request, receive, send, wire)
    # The ORM work of API views (a key missing from the cache, the ledger row) runs in the
    # one shared sync thread, not a new thread per request as in Django's handler: the hot
    # path makes no query at all. Closing the response fires request_finished, which closes
    # database connections: in the sync thread while it may hold one, else here, sparing
    # most requests the hop.
    if _sync_thread_may_hold_one:
        await sync_to_async(_finish)(response)
    elif response is not None:
        response.close()


async def _respond(
    request: ASGIRequest, receive: Any, send: Any, wire: WireFormat
) -> HttpResponseBase | None:
    try:
        match = resolve(request.path_info, urlconf=URLCONF)
    except Resolver404:
        message = f"unknown endpoint {request.method} {request.path}"
        response = wire.error_response(ApiError(404, message, code="unknown_url"))
        await _send(response, send, request.request_id)
        return response

    async def serve() -> HttpResponseBase:
        response = await match.func(request, *match.args, **match.kwargs)
        await _send(response, send, request.request_id)
        return response

    serving = asyncio.create_task(serve())
    listening = asyncio.create_task(_wait_for_disconnect(receive))
    await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not serving.done():
        # The client hung up: cancelling the view runs its `finally`, which closes the
        # engine stream (and so the upstream request) and charges what was generated.
        serving.cancel()
    listening.cancel()
    try:
        return await serving
    except asyncio.CancelledError:
        return None


async def _send(response: HttpResponseBase, send: Any, request_id: str) -> None:
    headers = [(name.encode("ascii"), value.encode("latin1")) for name, value in response.items()]
    headers.append((b"x-request-id", request_id.encode("ascii")))
    headers.append((b"x-content-type-options", b"nosniff"))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    if response.streaming:
        async for chunk in response:  # an async iterator: StreamingHttpResponse.__aiter__
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": response.content})


def _host_refusal(request: ASGIRequest) -> ApiError | None:
    """A 400 for a `Host` header outside ALLOWED_HOSTS, as pages get; None when it is fine."""
    try:
        request.get_host()
    except DisallowedHost as exc:
        host_log.error("%s", exc, extra={"status_code": 400})
        host = request.META.get("HTTP_HOST", "")[:100]
        message = f"Invalid Host header {host!r}: this site does not answer to that name"
        return ApiError(400, message, code="invalid_host")
    return None


async def _read_body(receive: Any, limit: int | None) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _wait_for_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


# Database connections belong to the sync thread, out of the event loop's sight, so the
# worker notes whenever one is opened, whoever opened it (this request, a web request, a
# websocket, an API call that outlived its client): until a request's end finds the thread
# holding none, every request ends in the sync thread, where request_finished closes it.
_sync_thread_may_hold_one = False


@receiver(connection_created, dispatch_uid="api.asgi.note_connection")
def _note_connection(sender: object, **kwargs: object) -> None:
    global _sync_thread_may_hold_one
    _sync_thread_may_hold_one = True


def _finish(response: HttpResponseBase | None) -> None:
    """End the request in the sync thread: close its connections as Django's handler does."""
    global _sync_thread_may_hold_one
    if response is not None:
        response.close()  # request_finished: close_old_connections
    else:  # the client left; its generation was charged as it stopped
        close_old_connections()
    # A connection kept for reuse (CONN_MAX_AGE, as on SQLite) is left open by design.
    _sync_thread_may_hold_one = any(
        conn.connection is not None and conn.settings_dict["CONN_MAX_AGE"] == 0
        for conn in connections.all(initialized_only=True)
    )


def _request_id(scope: dict) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return choose_request_id(value.decode("latin1"))
    return choose_request_id("")
