"""The one place that holds HTTP clients for upstreams: a pooled httpx.AsyncClient per loop."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from dataclasses import dataclass

import httpcore
import httpx
from django.conf import settings

from llm.network import AsyncioBackend

# httpx's default pool (100 connections, 5 s pool timeout) silently stalls stream 101.

# httpcore's pool looks at every connection it holds, and for each idle one counts them all
# again, whenever a request starts or ends: with a hundred connections kept alive after a
# burst, the next hundred requests spent ~1 s of CPU there before their first byte
# (bench/README.md). Several smaller pools behind one client keep that cost small.
POOL_SHARDS = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread round-robin over several connection pools."""

    def __init__(self, shards: int, limits: httpx.Limits) -> None:
        per_shard = httpx.Limits(
            max_connections=_share(limits.max_connections, shards),
            max_keepalive_connections=_share(limits.max_keepalive_connections, shards),
            keepalive_expiry=limits.keepalive_expiry,
        )
        ssl_context = httpx.create_ssl_context()  # loading the CA bundle takes a while: once
        self._pools = [upstream_transport(per_shard, ssl_context) for _ in range(shards)]
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def upstream_transport(
    limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncHTTPTransport:
    """httpx's transport over a connection pool whose sockets are `llm.network`'s."""
    ssl_context = ssl_context or httpx.create_ssl_context()
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=ssl_context)
    # httpx takes no network backend, so its pool is swapped for one built the same way
    # (httpx 0.28's `AsyncHTTPTransport.__init__`, no proxy; pinned <0.29, tested).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=AsyncioBackend(),
    )
    return transport


def _share(total: int | None, shards: int) -> int | None:
    return None if total is None else max(1, -(-total // shards))


USER_AGENT = "chatsite-llm"


@dataclass
class _Upstreams:
    """A loop's pools and the client over them (the catalog's small GETs use the client)."""

    transport: ShardedTransport
    client: httpx.AsyncClient


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Upstreams] = (
    weakref.WeakKeyDictionary()
)


def connect_timeout() -> float:
    """Seconds to open a TCP connection to an upstream."""
    return settings.LLM_CONNECT_TIMEOUT


def first_byte_timeout() -> float:
    """Seconds to wait for a response to start (models may have to load first)."""
    return settings.LLM_FIRST_BYTE_TIMEOUT


def chunk_timeout() -> float:
    """Seconds allowed between two pieces of a streamed body."""
    return settings.LLM_CHUNK_TIMEOUT


def _new_upstreams() -> _Upstreams:
    limits = httpx.Limits(
        max_connections=settings.LLM_MAX_CONNECTIONS,
        max_keepalive_connections=settings.LLM_MAX_KEEPALIVE,
        keepalive_expiry=30,
    )
    # The read timeout here is only a backstop: first byte and between-chunk waits differ,
    # so each request sets its own per phase (llm/clients/base.py).
    timeout = httpx.Timeout(
        connect=connect_timeout(),
        read=max(first_byte_timeout(), chunk_timeout()) + 5,
        write=30.0,
        pool=30.0,
    )
    transport = ShardedTransport(POOL_SHARDS, limits)
    client = httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=False,  # connection URLs come from admins; never wander off them
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )
    return _Upstreams(transport, client)


def _upstreams() -> _Upstreams:
    loop = asyncio.get_running_loop()
    upstreams = _per_loop.get(loop)
    if upstreams is None or upstreams.client.is_closed:
        upstreams = _per_loop[loop] = _new_upstreams()
    return upstreams


def get_client() -> httpx.AsyncClient:
    """The pooled client of the running event loop."""
    return _upstreams().client


async def send(request: httpx.Request) -> httpx.Response:
    """Send a generation request through the running loop's pools; the body is not read yet.

    Past the client on purpose: its cookie jar would carry one user's upstream cookies into
    another's requests, and its auth, redirect and hook steps cost more per request than
    the engine's own work before the first token (nothing here uses them: no redirects are
    followed, credentials are headers of the connection).
    """
    response = await _upstreams().transport.handle_async_request(request)
    response.request = request
    return response


async def close_client() -> None:
    """Close the running loop's client (tests and shutdown)."""
    upstreams = _per_loop.pop(asyncio.get_running_loop(), None)
    if upstreams is not None:
        await upstreams.client.aclose()  # and its transport
