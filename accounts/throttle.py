"""Login throttling: failed attempts counted per username and per client address."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from usage import limits


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0

    @property
    def message(self) -> str:
        minutes = max(1, round(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"Too many failed sign-in attempts. Try again in {minutes} {unit}."


def client_address(request: HttpRequest) -> str:
    """The client address; Daphne sets it from X-Forwarded-For with --proxy-headers."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def _buckets(username: str, address: str) -> list[tuple[str, int]]:
    return [
        (f"login:user:{username.strip().lower()}", settings.LOGIN_ATTEMPTS_PER_USERNAME),
        (f"login:addr:{address}", settings.LOGIN_ATTEMPTS_PER_ADDRESS),
    ]


def check(username: str, address: str) -> Verdict:
    """Whether another attempt is allowed now."""
    for bucket, limit in _buckets(username, address):
        window = limits.peek(bucket)
        if window.count >= limit:
            return Verdict(False, window.retry_after)
    return Verdict(True)


def record_failure(username: str, address: str) -> None:
    """Count a failed attempt against both the username and the address."""
    for bucket, _ in _buckets(username, address):
        limits.hit(bucket, settings.LOGIN_THROTTLE_SECONDS)


def record_success(username: str) -> None:
    """A successful sign-in clears the username's failures (not the address's)."""
    limits.clear(f"login:user:{username.strip().lower()}")
