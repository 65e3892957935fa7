"""httpcore adapter: the engine's upstream sockets on plain asyncio protocols.

Checked against: httpcore >=1.0,<1.1 (1.0.9), as httpx 0.28 requires.
Why: httpcore's default backend costs a cancel scope and an epoll register/unregister per
streamed read; a model server sends one read per token (figures: bench/README.md).
What it relies on beyond httpcore's documented `network_backend=` hook: how httpcore's
HTTP/1.1 connection uses a network stream (one `read()` at a time from one task, the
exceptions it expects, `get_extra_info("is_readable")` to spot a kept-alive connection the
server closed).
Fallback: httpcore's own `AnyIOBackend` (its default on asyncio), used when the installed
httpcore is outside the range above (logged once) or when LIBRARY_FALLBACKS is set. Both
paths sit behind `llm.network.CheckedBackend`, so the address check is the same.
Tests: tests/llm/test_network.py runs its pool tests on both paths; CI runs tests/llm and
tests/api again with LIBRARY_FALLBACKS=1.

Here the protocol keeps what arrives in a buffer, so a read that finds data returns it
without waiting, and a read that must wait arms one loop timer. Reading is paused only when
the buffer passes `HIGH_WATER` (a caller that stopped reading), as asyncio's own streams do.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
from django.conf import settings

from llm.network import CheckedBackend, SocketOption

log = logging.getLogger(__name__)

CHECKED_VERSIONS = ((1, 0), (1, 1))  # from (inclusive) and to (exclusive), major.minor
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


def network_backend() -> httpcore.AsyncNetworkBackend:
    """The network backend of the engine's connection pools, behind the address check."""
    if uses_fallback(httpcore.__version__, settings.LIBRARY_FALLBACKS):
        return CheckedBackend(httpcore.AnyIOBackend())
    return CheckedBackend(AsyncioBackend())


_reported: set[tuple[str, bool]] = set()


def uses_fallback(version: str, forced: bool) -> bool:
    """Whether the pools must use httpcore's own backend: asked for, or an httpcore this
    module was not checked against (each reason logged once per process)."""
    if forced:
        _report(version, forced, "LIBRARY_FALLBACKS is set")
        return True
    if not _checked(version):
        low, high = CHECKED_VERSIONS
        checked = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
        _report(version, forced, f"httpcore {version} is outside the checked range {checked}")
        return True
    return False


def _checked(version: str) -> bool:
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = CHECKED_VERSIONS
    return low <= major_minor < high


def _report(version: str, forced: bool, reason: str) -> None:
    if (version, forced) not in _reported:
        _reported.add((version, forced))
        log.warning("upstream sockets: httpcore's own network backend, as %s", reason)


class _Protocol(asyncio.Protocol):
    """Buffers what arrives and wakes the one reader (httpcore reads from one task)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.reader: asyncio.Future[bool] | None = None
        self.drainer: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        _wake(self.reader)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.reader)
        return False  # close our side too: HTTP/1.1 never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        _wake(self.reader)
        _wake(self.drainer)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drainer)

    def take(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` of what is buffered (there is some)."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) > max_bytes:
            self.chunks = [data[max_bytes:]]
            data = data[:max_bytes]
        else:
            chunks.clear()
        self.size -= len(data)
        if self.reading_paused and self.size < LOW_WATER and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return data


def _readable(transport: asyncio.BaseTransport) -> bool:
    """Whether the socket under `transport` has something to read (or is closed)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _wake(waiter: asyncio.Future[bool] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def _wait(protocol: _Protocol, slot: str, seconds: float | None) -> bool:
    """Wait for the protocol to wake `slot`; False when `seconds` passed first."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()
    setattr(protocol, slot, waiter)
    timer = loop.call_later(seconds, _expire, waiter) if seconds is not None else None
    try:
        return await waiter
    finally:
        setattr(protocol, slot, None)
        if timer is not None:
            timer.cancel()


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One upstream connection."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            if not await _wait(protocol, "reader", timeout):
                raise httpcore.ReadTimeout(f"no data for {timeout:g} s")
        if protocol.chunks:
            return protocol.take(max_bytes)
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""  # the server closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        while protocol.writing_paused and not protocol.eof:
            if not await _wait(protocol, "drainer", timeout):
                raise httpcore.WriteTimeout(f"could not send for {timeout:g} s")
        if protocol.error is not None:
            raise httpcore.WriteError(str(protocol.error) or type(protocol.error).__name__)

    async def aclose(self) -> None:
        # Dropped at once, as anyio's backend does: a connection httpcore gives up on (a
        # cancelled stream, a timed-out write) must not linger to flush a queued request
        # body or wait out a TLS goodbye from a hung upstream.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = transport  # type: ignore[assignment]
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # idle in the pool: the server closed it, or sent junk
            protocol = self._protocol
            # The socket itself too: a close the loop has not yet read (a busy loop) must
            # not send the next request down a dead connection.
            return bool(protocol.chunks) or protocol.eof or _readable(self._transport)
        names = {
            "ssl_object": "ssl_object",
            "client_addr": "sockname",
            "server_addr": "peername",
            "socket": "socket",
        }
        return self._transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens `AsyncioStream`s (to an address already checked: see `network_backend`)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        opening = loop.create_connection(_Protocol, host, port, local_addr=local)
        transport, protocol = await _connect(opening, timeout)
        return _stream(transport, protocol, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        transport, protocol = await _connect(loop.create_unix_connection(_Protocol, path), timeout)
        return _stream(transport, protocol, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _connect(opening: Any, seconds: float | None) -> tuple[Any, _Protocol]:
    try:
        async with asyncio.timeout(seconds):
            return await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no connection within {seconds:g} s") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc


def _stream(
    transport: asyncio.Transport, protocol: _Protocol, options: Iterable[SocketOption] | None
) -> AsyncioStream:
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
