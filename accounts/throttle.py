"""Login throttling: sign-in attempts counted per username and per client address.

An attempt is counted before its password is checked, atomically for both, so concurrent
guesses cannot all pass the count while the slow hash runs; the count then stands as a
failure unless the sign-in succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from accounts import limits
from chatsite.redis import get_redis


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


def _username_bucket(username: str) -> str:
    return f"login:user:{username.strip().lower()}"


def _address_bucket(address: str) -> str:
    return f"login:addr:{address}"


def attempt(username: str, address: str) -> Verdict:
    """Take one attempt from the username's and the address's allowance, or refuse."""
    reservation = limits.reserve(
        [
            (_username_bucket(username), settings.LOGIN_ATTEMPTS_PER_USERNAME),
            (_address_bucket(address), settings.LOGIN_ATTEMPTS_PER_ADDRESS),
        ],
        settings.LOGIN_THROTTLE_SECONDS,
    )
    return Verdict(reservation.allowed, reservation.retry_after)


def record_success(username: str, address: str) -> None:
    """A successful sign-in clears the username's failures and gives the address back its
    attempt (only failures count against an address, which many people may share)."""
    limits.clear(_username_bucket(username))
    limits.give_back(_address_bucket(address))


def first_refusal(username: str, address: str, retry_after: int) -> bool:
    """Whether this refusal is the first, in its window, for both the username and the
    address: the audit log gets one entry per throttled burst, not one per guess."""
    pipe = get_redis().pipeline(transaction=False)
    pipe.set(f"limit:refused:{_username_bucket(username)}", 1, nx=True, ex=max(retry_after, 1))
    pipe.set(f"limit:refused:{_address_bucket(address)}", 1, nx=True, ex=max(retry_after, 1))
    return all(pipe.execute())
