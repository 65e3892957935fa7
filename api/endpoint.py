"""The decorator every API view wears: method check, key auth, errors in the door's shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps

import redis
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from accounts.models import ApiKey
from api import ratelimits
from api.auth import authenticate
from api.errors import ApiError, body_too_large
from api.formats import WireFormat

log = logging.getLogger(__name__)


def _request_id(request: HttpRequest) -> str:
    return getattr(request, "request_id", "?")


View = Callable[..., Awaitable[HttpResponseBase]]


def endpoint(*methods: str, wire: WireFormat) -> Callable[[View], View]:
    """An async API view called as `view(request, key, ...)`; never a bare 500 or HTML page,
    every refusal in the shape of `wire`.

    Key auth, no cookies: CSRF does not apply, and the session is never read.
    """

    def wrap(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        async def run(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            try:
                if request.method not in methods:
                    allowed = ", ".join(methods)
                    raise ApiError(
                        405,
                        f"method {request.method} not allowed here; use {allowed}",
                        headers={"Allow": allowed},
                    )
                key: ApiKey = await authenticate(request, wire)
                rate_headers = ratelimits.collect()
                response = await view(request, key, *args, **kwargs)
                for name, value in rate_headers.items():
                    response[name] = value
                return response
            except RequestDataTooBig:
                return wire.error_response(body_too_large())
            except ApiError as exc:
                return wire.error_response(exc)
            except redis.RedisError as exc:
                # Keys, the catalog and the meter live in Redis: without it nothing can be
                # checked, which is worth a retry, not an internal error.
                log.error("API request %s: Redis unavailable: %s", _request_id(request), exc)
                error = ApiError(
                    503,
                    "the server's key and usage store is unavailable; retry shortly",
                    code="service_unavailable",
                    type="server_error",
                    headers={"Retry-After": "5"},
                )
                return wire.error_response(error)
            except Exception:
                log.exception("API request %s failed", _request_id(request))
                error = ApiError(
                    500,
                    f"internal error; quote request id {_request_id(request)}",
                    code="server_error",
                    type="server_error",
                )
                return wire.error_response(error)

        return run

    return wrap
