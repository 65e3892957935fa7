"""The engine's upstream sockets (llm/httpcore_adapter.py, llm/network.py) against real
loopback servers.

Every test talks to a plain `asyncio.start_server` on 127.0.0.1 (or a Unix socket) through
the engine's transport (`llm.http.UpstreamTransport`), or through an httpcore pool on the
engine's network backend where it needs TLS, socket options or a Unix socket. Each runs on
both paths of the httpcore adapter: the engine's own sockets and httpcore's (the fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import random
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llm.http import (
    READ_PHASES,
    ReadPhases,
    UpstreamTransport,
    close_client,
    get_client,
    model_request,
    send,
)
from llm.httpcore_adapter import AsyncioBackend, network_backend
from llm.network import AddressRefused, connect_first

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

MiB = 1024 * 1024
SMALL = 64 * 1024  # a kernel socket buffer size, so the kernel cannot hide backpressure
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def whole(body: bytes) -> bytes:
    """A complete response with a Content-Length body."""
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The head of the next request (b"" once the client closed the connection)."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""


class Upstream:
    """A loopback server running `handler` on each connection it accepts, counting them."""

    def __init__(
        self,
        handler: Handler,
        ssl_context: ssl.SSLContext | None = None,
        unix_path: str | None = None,
    ) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.unix_path = unix_path
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> Upstream:
        if self.unix_path:
            self._server = await asyncio.start_unix_server(self._accept, self.unix_path)
        else:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", 0, ssl=self.ssl_context
            )
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self._tasks.discard(task)
            writer.transport.abort()


@pytest.fixture(autouse=True, params=["engine", "fallback"])
def path(request: pytest.FixtureRequest, settings: object) -> str:
    """Each test on the adapter's two paths: the engine's sockets, and httpcore's own."""
    settings.LIBRARY_FALLBACKS = request.param == "fallback"  # type: ignore[attr-defined]
    return request.param


@asynccontextmanager
async def engine_client(**timeouts: float) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the engine's own transport (`UpstreamTransport`)."""
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30)
    timeout = httpx.Timeout(5.0, **timeouts)
    async with httpx.AsyncClient(transport=UpstreamTransport(limits), timeout=timeout) as client:
        yield client


def pool(**options: object) -> httpcore.AsyncConnectionPool:
    """An httpcore pool on the engine's network backend, as `UpstreamTransport` builds one."""
    return httpcore.AsyncConnectionPool(network_backend=network_backend(), **options)  # type: ignore[arg-type]


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- TLS -------------------------------------------------------------------------------


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 and localhost and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chatsite test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate and a client one trusting it."""
    cert_pem, key_pem = self_signed()
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


# -- streaming -------------------------------------------------------------------------


async def test_each_chunk_is_delivered_as_soon_as_it_arrives():
    """The server sends the next chunk only once the client has the previous one."""
    pieces = [b"tok%d " % i for i in range(200)]
    received: asyncio.Queue[None] = asyncio.Queue()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        for piece in pieces:
            writer.write(chunk(piece))
            await writer.drain()
            await received.get()
        writer.write(LAST_CHUNK)
        await writer.drain()

    got: list[bytes] = []
    async with Upstream(handler) as upstream, engine_client() as client:
        async with asyncio.timeout(3), client.stream("GET", upstream.url) as response:
            async for piece in response.aiter_raw():
                got.append(piece)
                received.put_nowait(None)
    assert got == pieces


async def test_a_burst_of_small_chunks_arrives_complete_and_in_order():
    """Thousands of tiny chunks written back to back come out whole and in order."""
    pieces = [b"%05d," % i for i in range(5000)]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        for i, piece in enumerate(pieces):
            writer.write(chunk(piece))
            if i % 100 == 0:
                await writer.drain()
        writer.write(LAST_CHUNK)
        await writer.drain()

    async with Upstream(handler) as upstream, engine_client() as client:
        async with client.stream("GET", upstream.url) as response:
            reads = [piece async for piece in response.aiter_raw()]
    assert b"".join(reads) == b"".join(pieces)
    assert response.status_code == 200


# -- timeouts and errors ---------------------------------------------------------------


async def stall(reader: asyncio.StreamReader) -> None:
    """Send nothing more; return when the client goes away."""
    with contextlib.suppress(ConnectionError):
        await reader.read()


@pytest.mark.parametrize("headers_first", [True, False], ids=["mid-body", "before-headers"])
async def test_a_stalled_server_raises_read_timeout_promptly(headers_first: bool):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if headers_first:
            writer.write(CHUNKED + chunk(b"first"))
        await stall(reader)

    async with Upstream(handler) as upstream, engine_client(read=0.2) as client:
        started = time.monotonic()
        async with asyncio.timeout(2):
            with pytest.raises(httpx.ReadTimeout):
                async with client.stream("GET", upstream.url) as response:
                    body = response.aiter_raw()
                    assert await anext(body) == b"first"
                    started = time.monotonic()
                    await anext(body)
    waited = time.monotonic() - started
    assert 0.15 <= waited < 1.0


async def test_the_read_timeout_counts_each_read_on_its_own():
    """Chunks 0.1 s apart under a 0.25 s read timeout: the whole body takes longer, no error."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        for i in range(4):
            await asyncio.sleep(0.1)
            writer.write(chunk(b"%d" % i))
        writer.write(LAST_CHUNK)

    async with Upstream(handler) as upstream, engine_client(read=0.25) as client:
        started = time.monotonic()
        response = await client.get(upstream.url)
    assert response.content == b"0123"
    assert time.monotonic() - started > 0.25


def model_request_to(url: str, first_byte: float, between_chunks: float) -> httpx.Request:
    """A request with the engine's two read timeouts (as `llm.http.model_request` sets)."""
    phases = ReadPhases(first_byte, between_chunks)
    timeout = {"connect": 5.0, "read": max(first_byte, between_chunks), "write": 5.0, "pool": 5.0}
    return httpx.Request("GET", url, extensions={"timeout": timeout, READ_PHASES: phases})


async def test_a_slow_first_byte_is_allowed_and_a_later_gap_is_not():
    """The response may take longer to start than a gap between chunks may last."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.4)  # a model loading
        writer.write(CHUNKED + chunk(b"first"))
        await stall(reader)

    async with Upstream(handler) as upstream, engine_client() as client:
        request = model_request_to(upstream.url, first_byte=1.0, between_chunks=0.2)
        response = await client.send(request, stream=True)
        body = response.aiter_raw()
        assert await anext(body) == b"first"
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await anext(body)
        assert 0.15 <= time.monotonic() - started < 1.0
        await response.aclose()


async def test_a_response_that_does_not_start_in_time_is_a_read_timeout():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await stall(reader)

    async with Upstream(handler) as upstream, engine_client() as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.send(model_request_to(upstream.url, 0.2, 5.0), stream=True)
    assert 0.15 <= time.monotonic() - started < 1.0


async def test_only_waiting_for_the_upstream_counts_as_a_gap():
    """A reader that takes its time between chunks it already has is no stalled upstream."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + chunk(b"a") + chunk(b"b") + LAST_CHUNK)
        await stall(reader)

    async with Upstream(handler) as upstream, engine_client() as client:
        request = model_request_to(upstream.url, first_byte=1.0, between_chunks=0.1)
        async with asyncio.timeout(3):
            response = await client.send(request, stream=True)
            pieces = []
            async for piece in response.aiter_raw():
                pieces.append(piece)
                await asyncio.sleep(0.3)
            await response.aclose()
    assert b"".join(pieces) == b"ab"


async def test_a_cancelled_read_stays_a_cancellation():
    """Cancelling the reader mid-body is no timeout: the cancellation goes through."""
    started = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + chunk(b"first"))
        await stall(reader)

    async def read_all(client: httpx.AsyncClient, url: str) -> None:
        response = await client.send(model_request_to(url, 1.0, 0.3), stream=True)
        try:
            async for _ in response.aiter_raw():
                started.set()
        finally:
            await response.aclose()

    async with Upstream(handler) as upstream, engine_client() as client:
        reading = asyncio.create_task(read_all(client, upstream.url))
        await asyncio.wait_for(started.wait(), 2)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await asyncio.sleep(0.4)  # past the gap limit: nothing fires into this task later
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_closed_port_raises_connect_error():
    port = free_port()
    async with engine_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(httpcore.ConnectError):
        await network_backend().connect_tcp("127.0.0.1", port, timeout=1.0)


async def test_a_server_that_never_accepts_raises_connect_timeout():
    """A listener whose accept queue is full drops new SYNs, so the connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            async with engine_client(connect=0.2) as client:
                started = time.monotonic()
                async with asyncio.timeout(2):
                    with pytest.raises(httpx.ConnectTimeout):
                        await client.get(f"http://127.0.0.1:{port}/")
            assert time.monotonic() - started < 1.0
        finally:
            for filler in fillers:
                filler.close()


async def test_a_server_that_stops_reading_raises_write_timeout():
    """A large request body to a server that reads nothing: the send gives up in time."""
    stuck = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)
        await stuck.wait()

    options = [(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)]
    async with Upstream(handler) as upstream, pool(socket_options=options) as client:
        started = time.monotonic()
        async with asyncio.timeout(2):
            with pytest.raises(httpcore.WriteTimeout):
                await client.request(
                    "POST",
                    upstream.url,
                    content=bytes(16 * MiB),
                    extensions={"timeout": {"write": 0.2}},
                )
        assert time.monotonic() - started < 1.0
        stuck.set()


async def test_a_connection_closed_with_unsent_data_is_dropped_at_once():
    """After a write timeout httpcore closes the connection, which must be aborted:
    `transport.close()` would keep the socket open until the rest of the abandoned request
    body had been sent, which is never if the server stopped reading. The server below
    reads only after the client gave up, and must find the
    connection ended after little more than the kernel's buffers, not the whole body.
    """
    body = bytes(16 * MiB)
    gave_up = asyncio.Event()
    received: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)
        await gave_up.wait()
        await asyncio.sleep(0.05)  # the client's loop runs its close
        total = 0
        while data := await reader.read(MiB):
            total += len(data)
        received.set_result(total)

    options = [(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)]
    async with Upstream(handler) as upstream, pool(socket_options=options) as client:
        async with asyncio.timeout(2):
            with pytest.raises(httpcore.WriteTimeout):
                await client.request(
                    "POST", upstream.url, content=body, extensions={"timeout": {"write": 0.2}}
                )
        gave_up.set()
        total = await asyncio.wait_for(received, 2.0)
    assert total < 2 * MiB  # not the rest of the body the client had already given up on


async def test_a_reset_connection_raises_read_error():
    """The server resets the connection mid-body: the read fails, it is no clean end."""
    reset = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + chunk(b"first"))
        await writer.drain()
        await reset.wait()
        linger_zero = struct.pack("ii", 1, 0)  # close() then sends RST, not FIN
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
        writer.transport.abort()

    async with Upstream(handler) as upstream, engine_client() as client:
        with pytest.raises(httpx.ReadError):
            async with client.stream("GET", upstream.url) as response:
                body = response.aiter_raw()
                assert await anext(body) == b"first"
                reset.set()
                await anext(body)


# -- the raw stream --------------------------------------------------------------------


async def test_the_stream_reads_writes_and_reports_its_addresses(path: str):
    """Straight on the engine's backend: socket options, addresses, echo, `is_readable`
    (buffered data counts), b"" at the end."""
    if path == "fallback":
        pytest.skip("the engine's own stream")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(5))
        await writer.drain()
        await reader.readexactly(3)
        writer.write_eof()
        await stall(reader)

    keepalive = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    async with Upstream(handler) as upstream:
        stream = await AsyncioBackend().connect_tcp(
            "127.0.0.1", upstream.port, timeout=1.0, socket_options=keepalive
        )
        try:
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", upstream.port)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            sock = stream.get_extra_info("socket")
            assert sock.type == socket.SOCK_STREAM
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1  # options applied
            assert stream.get_extra_info("ssl_object") is None
            assert stream.get_extra_info("no such thing") is None
            assert not stream.get_extra_info("is_readable")

            await stream.write(b"hello", timeout=1.0)
            assert await stream.read(2, timeout=1.0) == b"he"  # the rest stays buffered
            assert stream.get_extra_info("is_readable")
            assert await stream.read(100, timeout=1.0) == b"llo"
            assert not stream.get_extra_info("is_readable")
            async with asyncio.timeout(1):
                with pytest.raises(httpcore.ReadTimeout):
                    await stream.read(100, timeout=0.05)

            await stream.write(b"bye", timeout=1.0)
            assert await stream.read(100, timeout=1.0) == b""  # the server closed its side
            assert stream.get_extra_info("is_readable")  # so a pool would drop it
        finally:
            await stream.aclose()


# -- keep-alive ------------------------------------------------------------------------


async def test_the_engines_client_sends_no_cookie_back():
    """A model server's cookie is kept for no one: one person's upstream session must not
    ride along on another person's request (catalog requests and generations alike)."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await read_request(reader):
            heads.append(head.lower())
            writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=alice; Path=/\r\n")
            writer.write(b"content-length: 2\r\n\r\nok")
            await writer.drain()

    await close_client()  # a client of this test's path
    try:
        async with Upstream(handler) as upstream:
            for _ in range(2):
                assert (await get_client().get(upstream.url)).text == "ok"
            response = await send(model_request(upstream.url, b"{}", {}))
            assert await response.aread() == b"ok"
            await response.aclose()
    finally:
        await close_client()
    assert len(heads) == 3
    assert not any(b"\r\ncookie:" in head for head in heads), heads


async def test_sequential_requests_share_one_connection():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        while await read_request(reader):
            count += 1
            writer.write(whole(b"answer %d" % count))
            await writer.drain()

    async with Upstream(handler) as upstream, engine_client() as client:
        first = await client.get(upstream.url)
        second = await client.get(upstream.url)
    assert (first.text, second.text) == ("answer 1", "answer 2")
    assert upstream.connections == 1


async def test_a_keepalive_connection_the_server_closed_is_replaced():
    """The pool spots (through `is_readable`) that an idle connection was closed, and redials."""
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(whole(b"once"))  # no "connection: close": the client keeps it
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with Upstream(handler) as upstream, engine_client() as client:
        assert (await client.get(upstream.url)).text == "once"
        await asyncio.wait_for(closed.wait(), 1.0)
        await asyncio.sleep(0.05)  # the client's loop takes in the server's FIN
        assert (await client.get(upstream.url)).text == "once"
    assert upstream.connections == 2


# -- flow control ----------------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
async def test_a_large_body_to_a_slow_reader_arrives_intact_with_backpressure(
    use_tls: bool, tls: tuple[ssl.SSLContext, ssl.SSLContext]
):
    """8 MiB to a client reading slowly: the client stops taking from the socket once it
    holds HIGH_WATER, so the server is held back (its lead over the reader stays small),
    and starts again once drained, so the whole body arrives."""
    body = random.Random(7).randbytes(8 * MiB)
    progress = {"sent": 0, "read": 0, "lead": 0}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), SMALL):
            writer.write(body[start : start + SMALL])
            await writer.drain()
            progress["sent"] = start + SMALL
            progress["lead"] = max(progress["lead"], progress["sent"] - progress["read"])
        await stall(reader)

    server_ssl, client_ssl = tls
    digest = hashlib.sha256()
    # Small kernel buffers, or the kernel alone could hold the whole body.
    options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL)]
    async with (
        Upstream(handler, ssl_context=server_ssl if use_tls else None) as upstream,
        pool(ssl_context=client_ssl, socket_options=options) as client,
    ):
        async with asyncio.timeout(4), client.stream("GET", upstream.url) as response:
            reads = 0
            async for piece in response.aiter_stream():
                digest.update(piece)
                progress["read"] += len(piece)
                reads += 1
                if reads % 4 == 0:
                    await asyncio.sleep(0.002)
    assert progress["read"] == len(body)
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()
    # Without the pause the server's lead reaches ~7 MiB; with it ~0.5 MiB (TCP), ~1.7 (TLS).
    assert progress["lead"] < len(body) // 2


# -- TLS -------------------------------------------------------------------------------


async def test_https_to_a_trusted_self_signed_server(tls: tuple[ssl.SSLContext, ssl.SSLContext]):
    server_ssl, client_ssl = tls

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(whole(b"over tls"))
            await writer.drain()

    async with (
        Upstream(handler, ssl_context=server_ssl) as upstream,
        pool(ssl_context=client_ssl) as client,
    ):
        async with client.stream("GET", upstream.url) as response:
            stream = response.extensions["network_stream"]
            ssl_object = stream.get_extra_info("ssl_object")
            assert isinstance(ssl_object, ssl.SSLObject)
            assert ssl_object.version() in ("TLSv1.2", "TLSv1.3")
            assert stream.get_extra_info("server_addr") == ("127.0.0.1", upstream.port)
            assert await response.aread() == b"over tls"
        again = await client.request("GET", upstream.url)  # kept alive through TLS
    assert again.status == 200 and again.content == b"over tls"
    assert upstream.connections == 1


async def test_https_to_an_untrusted_server_raises_connect_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
):
    server_ssl, _ = tls

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Upstream(handler, ssl_context=server_ssl) as upstream:
        async with pool(ssl_context=ssl.create_default_context()) as client:
            with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.request("GET", upstream.url)
        async with engine_client() as client:  # the engine's context trusts public CAs only
            with pytest.raises(httpx.ConnectError):
                await client.get(upstream.url)


# -- closing ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
async def test_closing_a_response_mid_stream_closes_the_connection(
    use_tls: bool, tls: tuple[ssl.SSLContext, ssl.SSLContext]
):
    """The server, still streaming, sees the client's close within a second."""
    gone: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED)
        watcher = asyncio.ensure_future(stall(reader))  # finishes at EOF (or on a reset)
        try:
            while not watcher.done():
                writer.write(chunk(b"tok "))
                await writer.drain()
                await asyncio.wait([watcher], timeout=0.01)
        except ConnectionError:
            pass
        finally:
            watcher.cancel()
            gone.set_result(time.monotonic())

    server_ssl, client_ssl = tls
    async with (
        Upstream(handler, ssl_context=server_ssl if use_tls else None) as upstream,
        pool(ssl_context=client_ssl) as client,
    ):
        async with client.stream("GET", upstream.url) as response:
            sock = response.extensions["network_stream"].get_extra_info("socket")
            async for piece in response.aiter_stream():
                assert piece.startswith(b"tok")
                break
            closed = time.monotonic()
        seen = await asyncio.wait_for(gone, 1.0)
        assert seen - closed < 1.0
        assert sock.fileno() == -1  # the client's socket itself is closed
        assert client.connections == []


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
async def test_a_connection_given_up_after_a_read_timeout_is_closed_at_once(
    use_tls: bool, tls: tuple[ssl.SSLContext, ssl.SSLContext]
):
    """A hung upstream (it takes in nothing more) makes the client time out, and httpcore
    closes the connection at once. Over TLS a polite `transport.close()` would wait for
    the server's close_notify, which never comes, for asyncio's 30 s SSL shutdown timeout.
    """

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(CHUNKED + chunk(b"first"))
        await writer.drain()
        writer.transport.pause_reading()
        await asyncio.Event().wait()  # hung until the test ends

    server_ssl, client_ssl = tls
    async with (
        Upstream(handler, ssl_context=server_ssl if use_tls else None) as upstream,
        pool(ssl_context=client_ssl) as client,
    ):
        with pytest.raises(httpcore.ReadTimeout):
            async with client.stream(
                "GET", upstream.url, extensions={"timeout": {"read": 0.2}}
            ) as response:
                sock = response.extensions["network_stream"].get_extra_info("socket")
                async for _ in response.aiter_stream():
                    pass
        await asyncio.sleep(0.1)  # a few turns of the loop, for the transport to finish
        assert sock.fileno() == -1  # closed now, not 30 s from now


# -- Unix sockets ----------------------------------------------------------------------


async def test_requests_over_a_unix_socket():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(whole(b"over a unix socket"))
            await writer.drain()

    with tempfile.TemporaryDirectory() as folder:  # short: Unix socket paths are limited
        path = str(Path(folder, "upstream.sock"))
        async with Upstream(handler, unix_path=path) as upstream, pool(uds=path) as client:
            first = await client.request("GET", "http://localhost/")
            second = await client.request("GET", "http://localhost/")
        with pytest.raises(httpcore.ConnectError):
            await network_backend().connect_unix_socket(path + ".missing", timeout=1.0)
    assert first.content == second.content == b"over a unix socket"
    assert upstream.connections == 1


async def test_an_idle_connection_the_server_closed_while_the_loop_was_busy_is_not_reused():
    """The pool asks `is_readable` before reusing a connection: a close that arrived while
    the loop was busy elsewhere (nothing has read it yet) must count, or the next request
    goes down a dead socket and fails. The server runs in a thread, off the busy loop."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            accepted.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.05)
            conn.close()  # an upstream's short keep-alive timeout

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    try:
        async with engine_client() as client:
            assert (await client.get(url)).text == "ok"
            time.sleep(0.2)  # noqa: ASYNC251 (the loop is busy while the server closes)
            assert (await client.get(url)).text == "ok"
    finally:
        listener.close()
        thread.join(2)
    assert len(accepted) == 2


# -- addresses (llm/addresses.py; the form's side is in test_addresses.py) --------------


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "0xa9fea9fe", "2852039166", "::ffff:169.254.169.254", "fe80::1"]
)
async def test_the_engine_never_connects_to_a_link_local_address(host):
    started = time.monotonic()
    with pytest.raises(AddressRefused, match="link-local address; connections may not reach"):
        await network_backend().connect_tcp(host, 80, timeout=5.0)
    assert time.monotonic() - started < 1.0  # refused, not timed out


async def test_a_name_is_resolved_and_checked_at_connect_time(settings):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(whole(b"hello"))
            await writer.drain()

    async with Upstream(handler) as upstream:
        stream = await network_backend().connect_tcp("localhost", upstream.port, timeout=1.0)
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", upstream.port)
        await stream.aclose()
        settings.LLM_ALLOW_PRIVATE_NETWORKS = False
        with pytest.raises(AddressRefused, match=r"localhost resolves to 127\.0\.0\.1, a loopback"):
            await network_backend().connect_tcp("localhost", upstream.port, timeout=1.0)
    assert upstream.connections == 1


async def test_tls_keeps_the_name_when_connecting_to_the_checked_address(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
):
    server_ssl, client_ssl = tls
    names: list[str | None] = []
    server_ssl.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(whole(b"over tls"))
            await writer.drain()

    try:
        async with (
            Upstream(handler, ssl_context=server_ssl) as upstream,
            pool(ssl_context=client_ssl) as client,
        ):
            response = await client.request("GET", f"https://localhost:{upstream.port}/")
        assert response.status == 200 and response.content == b"over tls"
        assert names == ["localhost"]  # the certificate was checked against the name, too
    finally:
        server_ssl.sni_callback = None


async def test_the_first_address_that_answers_wins():
    """Of several addresses (a name with IPv4 and IPv6 ones), a refusing one is skipped."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refusing = closed.getsockname()
    closed.close()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with Upstream(handler) as upstream:
        infos = [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
            for address in [refusing, ("127.0.0.1", upstream.port)]
        ]
        backend = network_backend()

        async def connect(info: tuple) -> httpcore.AsyncNetworkStream:
            return await backend.connect_tcp(info[4][0], info[4][1], timeout=1.0)

        stream = await connect_first(infos, connect)
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", upstream.port)
        await stream.aclose()
        with pytest.raises(httpcore.ConnectError):
            await connect_first(infos[:1] * 2, connect)
