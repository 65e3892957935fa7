"""Which network addresses the engine may connect to, and the check of a connection's URL.

Connection URLs are typed by admins, but the requests leave from the server: no URL, and no
name that resolves (now or later) to such an address, may reach a cloud metadata service or
anything else link-local. Loopback and private addresses are where a local Ollama lives, so
they are allowed unless `LLM_ALLOW_PRIVATE_NETWORKS` is off.

The connection form checks a URL when it is saved (`check_host`); `llm.network` checks every
address it is about to connect to, after resolving the name itself, so a name whose answer
changes after the save (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services outside 169.254.0.0/16 (which is refused whole): AWS over IPv6, Alibaba
# Cloud, Azure's wire server, Oracle Cloud.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, well-known and local).
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
HOST_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?")
PRIVATE_KINDS = ("a loopback address", "a private address", "an unspecified address")


class AddressRefused(Exception):
    """An address connections may not reach; the message says which and why."""


def allow_private() -> bool:
    """Whether loopback and private addresses are allowed (LLM_ALLOW_PRIVATE_NETWORKS)."""
    return settings.LLM_ALLOW_PRIVATE_NETWORKS


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, 6to4, NAT64), if any."""
    if address.version == 4:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if (value >> 32 == 0 and value > 1) or any(address in prefix for prefix in NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def refused_kind(address: IPAddress, private_allowed: bool) -> str | None:
    """What puts `address` off limits ("a link-local address"), or None when it is allowed."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return refused_kind(inner, private_allowed)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return "a link-local address"  # a zone index only makes sense on a local link
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.version == 4 and address.is_reserved:  # 240.0.0.0/4 and the broadcast address
        return "a reserved address"
    if private_allowed or address.is_global:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    return "a private address"


def check_address(host: str, address: IPAddress, private_allowed: bool) -> None:
    """Raise AddressRefused when `address` (what `host` resolved to) is off limits."""
    kind = refused_kind(address, private_allowed)
    if kind is None:
        return
    shown = str(address)
    what = f"{host} is {kind}" if _same(host, shown) else f"{host} resolves to {shown}, {kind}"
    if kind in PRIVATE_KINDS:
        raise AddressRefused(f"{what}, and LLM_ALLOW_PRIVATE_NETWORKS is off")
    raise AddressRefused(f"{what}; connections may not reach it")


def _same(host: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(address)
    except ValueError:
        return False


def check_host(host: str, port: int | None) -> None:
    """Raise AddressRefused when `host`, or any address it resolves to now, is off limits.

    A name that does not resolve at the moment passes: the check at connect time covers it.
    """
    private_allowed = allow_private()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        check_address(host, literal, private_allowed)
        return
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for *_, sockaddr in infos:
        check_address(host, ipaddress.ip_address(sockaddr[0]), private_allowed)


def validate_base_url(value: str) -> None:
    """A connection's base URL: http(s), a host (a name, even a single label, or an IP
    address), an optional port, a path; nothing the HTTP client could not send to, and no
    address that is always off limits (link-local, cloud metadata)."""
    message = "Enter an http:// or https:// URL, such as http://gpu-box:11434."
    if any(char.isspace() for char in value):
        raise ValidationError(message, code="invalid")
    parts = urlsplit(value)
    try:
        port = parts.port
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        raise ValidationError(message, code="invalid") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _valid_host(host):
        raise ValidationError(message, code="invalid")
    try:
        literal = _numeric(host, port)
        if literal is not None:
            check_address(host, literal, private_allowed=True)
    except AddressRefused as exc:
        raise ValidationError(f"{exc}.", code="refused") from None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return len(ascii_host) <= 253 and HOST_NAME.fullmatch(ascii_host) is not None


def _numeric(host: str, port: int | None) -> IPAddress | None:
    """The address a numeric host stands for, in any spelling the resolver accepts
    (2852039166, 0xA9FEA9FE, 0251.0376.0251.0376), without asking DNS."""
    try:
        infos = socket.getaddrinfo(
            host, port or 80, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except (OSError, UnicodeError):
        return None
    return ipaddress.ip_address(infos[0][4][0]) if infos else None
