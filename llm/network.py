"""Where the engine's upstream connections go: only to addresses `llm.addresses` allows.

`CheckedBackend` wraps an httpcore network backend (`llm.httpcore_adapter` picks which): it
resolves each name itself and connects only to addresses that passed the check, raising
`AddressRefused` before any packet leaves (docs/architecture.md, "Where the engine may
connect").
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from asyncio.staggered import staggered_race
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import httpcore

from llm import addresses

HAPPY_EYEBALLS_DELAY = 0.25  # as anyio's connect_tcp

SocketOption = tuple[int, int, int] | tuple[int, int, bytes] | tuple[int, int, None, int]
AddrInfo = tuple[Any, ...]  # (family, type, proto, canonname, sockaddr), as getaddrinfo's
Connected = TypeVar("Connected")


class AddressRefused(httpcore.ConnectError):
    """The upstream's address is off limits (`llm.addresses`); nothing was sent to it."""


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """`backend`, connecting to a name only at the addresses it resolves to and that pass
    `llm.addresses`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self.backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        options = list(socket_options or ())

        async def connect(info: AddrInfo) -> httpcore.AsyncNetworkStream:
            address = info[4][0]
            try:
                return await self.backend.connect_tcp(address, port, None, local_address, options)
            except httpcore.ConnectError as exc:
                raise httpcore.ConnectError(_first_reason(exc)) from exc

        try:
            async with asyncio.timeout(timeout):
                return await connect_first(await checked_addresses(host, port), connect)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except addresses.AddressRefused as exc:
            raise AddressRefused(str(exc)) from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self.backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


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


async def connect_first(
    infos: list[AddrInfo], connect: Callable[[AddrInfo], Awaitable[Connected]]
) -> Connected:
    """What `connect` opens to the first of `infos` to answer: the next address is tried
    when one fails or has not answered within HAPPY_EYEBALLS_DELAY, as asyncio's own connect."""
    if len(infos) == 1:
        return await connect(infos[0])
    attempts = [partial(connect, info) for info in _interleave(infos)]
    winner, _, errors = await staggered_race(attempts, HAPPY_EYEBALLS_DELAY)
    if winner is None:
        raise _combined([error for error in errors if error is not None])
    return winner


def _first_reason(exc: BaseException) -> str:
    """The words of the system error at the root of `exc` (`[Errno 111] Connection refused`,
    not a wrapper's `All connection attempts failed`), or of `exc` itself."""
    reason = str(exc) or type(exc).__name__
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, OSError):
            reason = str(cause) or reason
        cause = cause.__cause__
    return reason


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


def _combined(errors: list[BaseException]) -> Exception:
    """One error for every address that failed, as asyncio's create_connection raises."""
    if len(errors) == 1 and isinstance(errors[0], Exception):
        return errors[0]
    texts = list(dict.fromkeys(str(error) for error in errors))
    message = texts[0] if len(texts) == 1 else "Multiple exceptions: " + ", ".join(texts)
    return httpcore.ConnectError(message)
