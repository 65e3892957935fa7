"""Usage figures read from the daily rollups: sums per model, person, group, key or door,
tokens per day for the charts, and the labels that name each of them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import QuerySet, Sum

from usage import ttft
from usage.models import DailyModelUsage, DailyPersonUsage, DailyUsage

COUNTERS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "ok",
    "stopped",
    "interrupted",
    "failed",
    "duration_ms",
    "ttft_count",
    "ttft_ms",
    *ttft.FIELDS,
)

_SCALARS = COUNTERS[: -len(ttft.FIELDS)]

# How many series a stacked chart shows; the rest are summed as "Other".
TOP_SERIES = 8
OTHER = "Other"


@dataclass(frozen=True)
class Period:
    """Days from `start` to `end`, both included (UTC)."""

    start: date
    end: date

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


@dataclass
class Figures:
    """The summed counters of a set of rollup rows."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ok: int = 0
    stopped: int = 0
    interrupted: int = 0
    failed: int = 0
    duration_ms: int = 0
    ttft_count: int = 0
    ttft_ms: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * len(ttft.FIELDS))

    @classmethod
    def of(cls, values: dict[str, object]) -> Figures:
        """From a row of summed counters (some of `COUNTERS` as keys; others are 0)."""
        figures = cls()
        for name in _SCALARS:
            if name in values:
                setattr(figures, name, int(values[name] or 0))  # type: ignore[call-overload]
        if ttft.FIELDS[0] in values:
            figures.histogram = [int(values[name] or 0) for name in ttft.FIELDS]  # type: ignore[call-overload]
        return figures

    def add(self, other: Figures) -> None:
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def failure_share(self) -> float | None:
        """Failed or interrupted, of all requests."""
        return (self.failed + self.interrupted) / self.requests if self.requests else None

    @property
    def stop_share(self) -> float | None:
        return self.stopped / self.requests if self.requests else None

    @property
    def median_ttft_ms(self) -> int | None:
        return ttft.median(self.histogram)

    @property
    def mean_duration_ms(self) -> int | None:
        return round(self.duration_ms / self.requests) if self.requests else None


def rollups_in(period: Period, **filters: object) -> QuerySet[DailyUsage]:
    """The per-person rollup rows of a period (optionally of one person: `user_id=`)."""
    return DailyUsage.objects.filter(day__gte=period.start, day__lte=period.end, **filters)


def model_rollups_in(period: Period) -> QuerySet[DailyModelUsage]:
    """The per-model rollup rows of a period (everyone's)."""
    return DailyModelUsage.objects.filter(day__gte=period.start, day__lte=period.end)


def person_rollups_in(period: Period) -> QuerySet[DailyPersonUsage]:
    """The per-person-and-door rollup rows of a period (everyone's, without models)."""
    return DailyPersonUsage.objects.filter(day__gte=period.start, day__lte=period.end)


def grouped(rows: QuerySet, *by: str, counters: tuple[str, ...] = COUNTERS) -> dict[tuple, Figures]:
    """Rows summed per value of the fields `by`; only `counters` are summed, others stay 0."""
    sums = {name: Sum(name) for name in counters}
    summed = rows.values(*by).annotate(**sums).order_by()
    return {tuple(row[name] for name in by): Figures.of(row) for row in summed}


# What the split of a chart and the top people show.
PARTS = ("requests", "prompt_tokens", "completion_tokens", "failed", "interrupted")


def parts_and_days(
    rows: QuerySet, *by: str
) -> tuple[dict[tuple, Figures], dict[tuple, dict[date, int]]]:
    """In one pass: `PARTS` summed per value of the fields `by`, and their tokens per day."""
    summed = rows.values_list(*by, "day").annotate(*(Sum(name) for name in PARTS)).order_by()
    sums: dict[tuple, list[int]] = {}
    days: dict[tuple, dict[date, int]] = defaultdict(dict)
    width = len(by)
    for row in summed:
        key, counts = row[:width], row[width + 1 :]
        total = sums.get(key)
        sums[key] = (
            list(counts) if total is None else [a + b for a, b in zip(total, counts, strict=True)]
        )
        days[key][row[width]] = counts[1] + counts[2]  # prompt and completion tokens
    return {
        key: Figures.of(dict(zip(PARTS, total, strict=True))) for key, total in sums.items()
    }, days


def by_tokens(figures: dict[tuple, Figures]) -> list[tuple[tuple, Figures]]:
    """Most tokens first (then most requests)."""
    return sorted(figures.items(), key=lambda item: (-item[1].tokens, -item[1].requests))


def stacked(
    period: Period, per_day: dict[tuple, dict[date, int]], order: list[tuple], labels: dict
) -> tuple[list[str], list[tuple[str, list[int]]]]:
    """A chart's x labels and series: the first `TOP_SERIES` of `order`, then "Other"."""
    days = period.days
    series = [
        (labels[key], [per_day.get(key, {}).get(day, 0) for day in days])
        for key in order[:TOP_SERIES]
    ]
    rest = order[TOP_SERIES:]
    if rest:
        other = [sum(per_day.get(key, {}).get(day, 0) for key in rest) for day in days]
        series.append((OTHER, other))
    return [day.strftime("%b %d") for day in days], series


def usernames(user_ids: set[int]) -> dict[int, str]:
    """The usernames of these people."""
    users = get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username")
    return dict(users)


def key_labels(key_ids: set[int], *, with_owner: bool = False) -> dict[int, str]:
    """Each API key as "name (cs-…abcd)", with its owner's username when asked for."""
    api_key = apps.get_model("accounts", "ApiKey")
    keys = api_key.objects.filter(pk__in=key_ids).select_related("user")
    labels = {}
    for key in keys:
        label = f"{key.name} ({key.masked})"
        labels[key.pk] = f"{key.user.username}: {label}" if with_owner else label
    return labels


def door_labels(doors: set[tuple[str, int | None]], *, with_owner: bool = False) -> dict:
    """A label for each (door, key id): "Browser", the key's name, or "Deleted key"."""
    keys = key_labels({key for _, key in doors if key is not None}, with_owner=with_owner)
    labels = {}
    for door, key in doors:
        if door == "web":
            labels[(door, key)] = "Browser"
        elif key is None:
            labels[(door, key)] = "API (no key)"
        else:
            labels[(door, key)] = keys.get(key, f"Deleted key #{key}")
    return labels
