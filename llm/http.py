"""The one place that holds HTTP clients for upstreams: a pooled httpx.AsyncClient per loop.

Its transport is the engine's own, on public APIs only: httpx's transport interface over
httpcore's connection pools, whose network backend `llm.httpcore_adapter` picks (behind the
address check of `llm.network`). Requests to a model server (`model_request`) get two read
timeouts: a long one for the first byte (a model may have to load) and a shorter one for
each wait between two pieces of the body.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx
from django.conf import settings

from chatsite.loops import PerLoop
from llm.httpcore_adapter import network_backend

# httpx's default pool (100 connections, 5 s pool timeout) silently stalls stream 101.

# httpcore's pool looks at every connection it holds, and for each idle one counts them all
# again, whenever a request starts or ends: with a hundred connections kept alive after a
# burst, that cost grew with the square of the pool (bench/README.md). And it hands one idle
# kept-alive connection to every request that arrives before the first has started on it:
# all but one retry, one per round, so a pool's requests of a burst go one after another.
# Many small pools behind one client keep both small (LLM_MAX_CONNECTIONS split evenly).
POOL_SHARDS = 64
USER_AGENT = "chatsite-llm"
# The request extension that carries a model request's read timeouts (`ReadPhases`).
READ_PHASES = "chatsite.read_phases"


@dataclass(frozen=True)
class ReadPhases:
    """Seconds to wait for a response to start, and for each later piece of its body."""

    first_byte: float
    between_chunks: float


def connect_timeout() -> float:
    """Seconds to open a TCP connection to an upstream."""
    return settings.LLM_CONNECT_TIMEOUT


def first_byte_timeout() -> float:
    """Seconds to wait for a response to start (models may have to load first)."""
    return settings.LLM_FIRST_BYTE_TIMEOUT


def chunk_timeout() -> float:
    """Seconds allowed between two pieces of a streamed body."""
    return settings.LLM_CHUNK_TIMEOUT


def model_request(url: str, content: bytes, headers: dict[str, str]) -> httpx.Request:
    """A POST to a model server, with the engine's timeouts for each phase of the answer."""
    phases = ReadPhases(first_byte_timeout(), chunk_timeout())
    backstop = max(phases.first_byte, phases.between_chunks)  # the phases' own timers run first
    timeout = httpx.Timeout(connect=connect_timeout(), read=backstop, write=30.0, pool=30.0)
    return httpx.Request(
        "POST",
        url,
        content=content,
        headers={"User-Agent": USER_AGENT, **headers},
        extensions={"timeout": timeout.as_dict(), READ_PHASES: phases},
    )


class UpstreamTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over one httpcore connection pool on the engine's sockets.

    A request carrying `ReadPhases` times out with httpx.ReadTimeout when its response has
    not started within `first_byte` seconds, or when one wait for the next piece of its body
    lasts `between_chunks` seconds.
    """

    def __init__(self, limits: httpx.Limits, ssl_context: ssl.SSLContext | None = None) -> None:
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network_backend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        phases: ReadPhases | None = request.extensions.get(READ_PHASES)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        watch = _ReadWatch(phases) if phases is not None else None
        try:
            if watch is not None:
                watch.waiting()
            response = await self.pool.handle_async_request(core_request)
        except asyncio.CancelledError:
            if watch is not None and watch.timed_out():
                raise httpx.ReadTimeout(f"no response within {watch.limit:g} s") from None
            raise
        except Exception as exc:
            raise _as_httpx(exc)  # noqa: B904 (_as_httpx keeps the cause)
        finally:
            if watch is not None:
                watch.stop()
        if watch is not None:
            watch.body_started()
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, watch),  # type: ignore[arg-type]
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body from httpcore, its errors in httpx's words, each wait for the next
    piece limited by `watch` when there is one."""

    def __init__(self, stream: AsyncIterable[bytes], watch: _ReadWatch | None) -> None:
        self.stream = stream
        self.watch = watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        watch = self.watch
        parts = aiter(self.stream)
        try:
            while True:
                if watch is not None:
                    watch.waiting()
                try:
                    part = await anext(parts)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if watch is not None and watch.timed_out():
                        raise httpx.ReadTimeout(f"no data for {watch.limit:g} s") from None
                    raise
                except Exception as exc:
                    raise _as_httpx(exc)  # noqa: B904 (_as_httpx keeps the cause)
                if watch is not None:
                    watch.since = None
                yield part
        finally:
            if watch is not None:
                watch.stop()

    async def aclose(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        try:
            await self.stream.aclose()  # type: ignore[attr-defined]
        except Exception as exc:
            raise _as_httpx(exc)  # noqa: B904 (_as_httpx keeps the cause)


class _ReadWatch:
    """Cancels the reading task when one wait for the upstream lasts too long: the first
    byte's limit until the response has started, then the limit between two pieces of its
    body. One loop timer per response, re-armed only when it fires: a piece costs a clock
    read, where a timer per read would cost an entry in the loop's timer heap."""

    def __init__(self, phases: ReadPhases) -> None:
        self.limit = phases.first_byte
        self.between_chunks = phases.between_chunks
        self.loop = asyncio.get_running_loop()
        self.since: float | None = None  # when the current wait began
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.expired = False

    def waiting(self) -> None:
        self.since = self.loop.time()
        self.task = asyncio.current_task()
        if self.timer is None:
            self.timer = self.loop.call_at(self.since + self.limit, self._check)

    def body_started(self) -> None:
        """From now on each wait gets the limit between two pieces of the body."""
        self.limit = self.between_chunks
        self.since = None

    def _check(self) -> None:
        self.timer = None
        if self.since is None or self.task is None:
            return  # not waiting: the next wait arms a new timer
        due = self.since + self.limit
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._check)
            return
        self.expired = True
        self.task.cancel()

    def timed_out(self) -> bool:
        """Whether the cancellation at hand is this watch's own (which is then withdrawn)."""
        if not self.expired or self.task is None:
            return False
        self.expired = False
        return self.task.uncancel() == 0

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx(exc: Exception) -> Exception:
    """An httpcore exception as the httpx one it stands for (the cause kept); others as is."""
    for core_error, httpx_error in _HTTPX_ERRORS:
        if isinstance(exc, core_error):
            error = httpx_error(str(exc))
            error.__cause__ = exc
            return error
    return exc


class ShardedTransport(httpx.AsyncBaseTransport):
    """Requests spread round-robin over several connection pools."""

    def __init__(self, shards: int, limits: httpx.Limits) -> None:
        per_shard = httpx.Limits(
            max_connections=_share(limits.max_connections, shards),
            max_keepalive_connections=_share(limits.max_keepalive_connections, shards),
            keepalive_expiry=limits.keepalive_expiry,
        )
        ssl_context = httpx.create_ssl_context()  # loading the CA bundle takes a while: once
        self._pools = [UpstreamTransport(per_shard, ssl_context) for _ in range(shards)]
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _share(total: int | None, shards: int) -> int | None:
    return None if total is None else max(1, -(-total // shards))


def _new_client() -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.LLM_MAX_CONNECTIONS,
        max_keepalive_connections=settings.LLM_MAX_KEEPALIVE,
        keepalive_expiry=30,
    )
    # For requests without their own (the catalog's): first byte and chunks alike.
    timeout = httpx.Timeout(
        connect=connect_timeout(),
        read=max(first_byte_timeout(), chunk_timeout()) + 5,
        write=30.0,
        pool=30.0,
    )
    return httpx.AsyncClient(
        transport=ShardedTransport(POOL_SHARDS, limits),
        timeout=timeout,
        follow_redirects=False,  # connection URLs come from admins; never wander off them
        trust_env=False,
        # No cookie jar to speak of: one user's upstream cookies must never ride along on
        # another user's request.
        cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        headers={"User-Agent": USER_AGENT},
    )


# A client's connections belong to the loop that opened them: one client per loop.
_clients: PerLoop[httpx.AsyncClient] = PerLoop(_new_client)


def get_client() -> httpx.AsyncClient:
    """The pooled client of the running event loop."""
    client = _clients.get()
    if client.is_closed:
        _clients.pop()
        client = _clients.get()
    return client


async def send(request: httpx.Request) -> httpx.Response:
    """Send `request` through the running loop's pools; the body is not read yet."""
    return await get_client().send(request, stream=True)


async def close_client() -> None:
    """Close the running loop's client (tests and shutdown)."""
    client = _clients.pop()
    if client is not None:
        await client.aclose()  # and its transport
