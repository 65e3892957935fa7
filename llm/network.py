"""httpcore's network layer on plain asyncio protocols, for the engine's upstream sockets.

httpcore reads a streamed body one `read()` per chunk, and a model server sends one chunk
per token. Its default backend goes through anyio, which per read opens a cancel scope for
the timeout (`fail_after`: a task lookup, a library sniff, a timer) and resumes and pauses
the transport around the wait (an epoll register and unregister, two system calls). Under
a hundred streams that was a fifth of the worker's CPU (py-spy, bench/README.md).

Here the protocol keeps what arrives in a buffer, so a read that finds data returns it
without waiting, and a read that must wait arms one loop timer. Reading is paused only when
the buffer passes `HIGH_WATER` (a caller that stopped reading), as asyncio's own streams do.

Connecting resolves the name here, checks every address it resolved to against
`llm.addresses` (no link-local or metadata address, no private one unless allowed) and
connects to those checked addresses, the first to answer winning as in asyncio's happy
eyeballs; TLS and the Host header keep the name. A refused address raises `AddressRefused`
(an `httpcore.ConnectError`) before any packet leaves.

This is httpcore's documented extension point (`network_backend=`), used by
`llm.http.upstream_pool`; behaviour towards httpcore is the anyio backend's: the same
exceptions, `is_readable` for spotting keep-alive connections the server closed, TLS by
`loop.start_tls`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import select
import socket
import ssl
from asyncio.staggered import staggered_race
from collections.abc import Iterable
from functools import partial
from typing import Any

import httpcore

from llm import addresses

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
HAPPY_EYEBALLS_DELAY = 0.25  # as anyio's connect_tcp

SocketOption = tuple[int, int, int] | tuple[int, int, bytes] | tuple[int, int, None, int]


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
    """Opens `AsyncioStream`s."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        transport, protocol = await _connect(_open_tcp(host, port, local_address), timeout)
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


class AddressRefused(httpcore.ConnectError):
    """The upstream's address is off limits (`llm.addresses`); nothing was sent to it."""


async def _connect(opening: Any, seconds: float | None) -> tuple[Any, _Protocol]:
    try:
        async with asyncio.timeout(seconds):
            return await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"no connection within {seconds:g} s") from None
    except addresses.AddressRefused as exc:
        raise AddressRefused(str(exc)) from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc


AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr), as getaddrinfo's


async def _open_tcp(host: str, port: int, local_address: str | None) -> tuple[Any, _Protocol]:
    """A connection to `host` at one of its checked addresses."""
    sock = await connect_first(await checked_addresses(host, port), local_address)
    try:
        return await asyncio.get_running_loop().create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise


async def connect_first(infos: list[AddrInfo], local_address: str | None) -> socket.socket:
    """A socket connected to the first of `infos` to answer: the next address is tried when
    one fails or has not answered within HAPPY_EYEBALLS_DELAY, as asyncio's own connect."""
    if len(infos) == 1:
        return await _connect_socket(infos[0], local_address)
    attempts = [partial(_connect_socket, info, local_address) for info in _interleave(infos)]
    sock, _, errors = await staggered_race(attempts, HAPPY_EYEBALLS_DELAY)
    if sock is None:
        raise _combined([error for error in errors if error is not None])
    return sock


async def checked_addresses(host: str, port: int) -> list[AddrInfo]:
    """Where `host` resolves, each address allowed by `llm.addresses` (else AddressRefused)."""
    infos = _literal(host, port)
    if infos is None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"{host} resolves to no address")
    private_allowed = addresses.allow_private()
    for *_, sockaddr in infos:
        addresses.check_address(host, ipaddress.ip_address(sockaddr[0]), private_allowed)
    return infos


def _literal(host: str, port: int) -> list[AddrInfo] | None:
    """An IP address needs no resolver (a scoped IPv6 one is left to getaddrinfo)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 4:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    if isinstance(address, ipaddress.IPv6Address) and not address.scope_id:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    return None


def _interleave(infos: list[AddrInfo]) -> list[AddrInfo]:
    """The addresses alternating between families, the first family first (RFC 8305)."""
    families: dict[int, list[AddrInfo]] = {}
    for info in infos:
        families.setdefault(info[0], []).append(info)
    queues = list(families.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


async def _connect_socket(info: AddrInfo, local_address: str | None) -> socket.socket:
    """A non-blocking socket connected to the address of `info` (closed on any failure)."""
    family, kind, proto, _, sockaddr = info
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if local_address:
            sock.bind((local_address, 0))
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _combined(errors: list[BaseException]) -> OSError:
    """One error for every address that failed, as asyncio's create_connection raises."""
    if len(errors) == 1 and isinstance(errors[0], OSError):
        return errors[0]
    texts = list(dict.fromkeys(str(error) for error in errors))
    return OSError(texts[0] if len(texts) == 1 else "Multiple exceptions: " + ", ".join(texts))


def _stream(
    transport: asyncio.Transport, protocol: _Protocol, options: Iterable[SocketOption] | None
) -> AsyncioStream:
    sock: socket.socket | None = transport.get_extra_info("socket")
    for option in options or ():
        if sock is not None:
            sock.setsockopt(*option)
    return AsyncioStream(transport, protocol)
