"""Where a person stands against their limits at an admission: what is left, when each
limit resets, and the words of a refusal that names the limit hit and its reset.

Days and months are UTC: a day's budget resets at midnight, a month's on the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from usage.limits import Effective, Limit

# The meter's refusals (Lua kinds) that are spent budgets.
QUOTA_KINDS = ("quota", "month", "key_quota")


@dataclass(frozen=True)
class Window:
    """One limit as OpenAI's x-ratelimit-* headers show it."""

    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class Headroom:
    """The request rate and the tightest token budget after an admission (or a refusal);
    None where no limit applies."""

    requests: Window | None = None
    tokens: Window | None = None


def seconds_to_next_day(at: datetime) -> float:
    """Seconds from `at` to the next midnight UTC."""
    at = at.astimezone(UTC)
    midnight = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - at).total_seconds()


def next_month_start(at: datetime) -> datetime:
    """The first moment (UTC) of the month after `at`'s."""
    first = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def seconds_to_next_month(at: datetime) -> float:
    """Seconds from `at` to the start of the next month, UTC."""
    return (next_month_start(at) - at.astimezone(UTC)).total_seconds()


def headroom(
    effective: Effective,
    key_budget: int,
    *,
    requests_this_minute: int,
    used: tuple[int, int, int],
    now: float,
    at: datetime,
) -> Headroom:
    """The headroom from the meter's answer: requests counted this minute and the tokens
    used (spent and reserved) of the day's, the month's and the key's budgets."""
    rpm = effective.requests_per_minute.value
    requests = None
    if rpm > 0:
        remaining = max(rpm - requests_this_minute, 0)
        requests = Window(rpm, remaining, 60 - now % 60)
    budgets = [
        (effective.tokens_per_day.value, used[0], seconds_to_next_day(at)),
        (effective.tokens_per_month.value, used[1], seconds_to_next_month(at)),
        (key_budget, used[2], seconds_to_next_day(at)),
    ]
    windows = [
        Window(limit, max(limit - spent, 0), reset) for limit, spent, reset in budgets if limit > 0
    ]
    tokens = min(windows, key=lambda w: (w.remaining, -w.reset_seconds), default=None)
    return Headroom(requests, tokens)


def refusal_message(
    kind: str, effective: Effective, key_budget: int, retry_after: int, at: datetime
) -> str:
    """A refusal's words: the limit hit, where it comes from, and when it resets."""
    wait = in_words(retry_after)
    if kind == "quota":
        return (
            f"You exceeded your daily token quota: {_tokens(effective.tokens_per_day)} per day"
            f"{_from(effective.tokens_per_day)}. It resets at midnight UTC, in {wait}."
        )
    if kind == "month":
        reset = next_month_start(at)
        return (
            f"You exceeded your monthly token quota: {_tokens(effective.tokens_per_month)} per "
            f"month{_from(effective.tokens_per_month)}. It resets on {reset:%Y-%m-%d} at "
            f"00:00 UTC, in {wait}."
        )
    if kind == "key_quota":
        return (
            f"This API key's daily token quota is spent: {key_budget:,} tokens per day. "
            f"It resets at midnight UTC, in {wait}."
        )
    if kind == "concurrency":
        limit = effective.concurrent
        return (
            f"Too many generations at once for your account: at most {limit.value}"
            f"{_from(limit)}. Wait for one to finish."
        )
    limit = effective.requests_per_minute
    return (
        f"Too many requests this minute: at most {limit.value} requests per minute"
        f"{_from(limit)}. It resets in {wait}."
    )


def _tokens(limit: Limit) -> str:
    return f"{limit.value:,} tokens"


def _from(limit: Limit) -> str:
    return f" ({limit.in_words})"


def in_words(seconds: float) -> str:
    """A wait in words, to the two largest units: "3 h 12 min", "45 s"."""
    left = max(int(seconds), 1)
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    for index, (unit, size) in enumerate(units):
        if left >= size:
            words = f"{left // size} {unit}"
            if index + 1 < len(units):
                next_unit, next_size = units[index + 1]
                if (left % size) // next_size:
                    words += f" {(left % size) // next_size} {next_unit}"
            return words
    return "1 s"
