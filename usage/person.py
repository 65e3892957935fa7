"""What a person's Usage page shows: tokens today and this month against their budgets, their
last 30 days by model, their use per door, and their generations (the ledger, paginated).

Also shown to admins for any person (the console); the page's data is built here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.text import slugify

from usage import charts, reports, rollups
from usage.limits import effective_limits
from usage.models import Generation
from usage.tables import (
    OUTCOME_COLUMNS,
    SHARE,
    TEXT,
    Column,
    Table,
    csv_response,
    outcome_cells,
    table_csv,
)

CHART_DAYS = 30
GENERATIONS_PER_PAGE = 50
BAD_DOOR = "Unknown door: use door=web or door=key-<id>."
BAD_TABLE = "Unknown table: use table=generations, models, daily or doors."


class BadFilter(ValueError):
    """A door filter that is neither "web" nor "key-<id>"."""


@dataclass(frozen=True)
class Budget:
    """Tokens used in a span against its limit (None or 0: no limit)."""

    label: str
    used: int
    limit: int | None
    source: str  # where the limit comes from ("person", "group data", "role default")
    resets: str

    @property
    def limited(self) -> bool:
        return bool(self.limit)

    @property
    def shown_max(self) -> int:
        """The bar's end: the limit, or what was used when that is more."""
        return max(self.limit or 0, self.used)

    @property
    def high(self) -> int:
        """Where the bar turns to a warning: 90 % of the limit."""
        return (self.limit or 0) * 9 // 10

    @property
    def share(self) -> float:
        return self.used / self.limit if self.limit else 0.0


def budgets(user: object, today: date) -> list[Budget]:
    """Today's and this month's tokens against the person's effective limits (UTC)."""
    limits = effective_limits(user)  # type: ignore[arg-type]
    user_id = user.pk  # type: ignore[attr-defined]
    tomorrow = today + timedelta(days=1)
    return [
        Budget(
            "Today",
            rollups.tokens_on_day(user_id, today.strftime("%Y%m%d")),
            limits.tokens_per_day.value,
            limits.tokens_per_day.source,
            f"resets at midnight UTC ({tomorrow:%Y-%m-%d})",
        ),
        Budget(
            "This month",
            rollups.tokens_in_month(user_id, today.strftime("%Y%m")),
            limits.tokens_per_month.value,
            limits.tokens_per_month.source,
            f"resets on {rollups.next_month(today):%Y-%m-%d} (UTC)",
        ),
    ]


def door_filter(value: str) -> dict[str, object]:
    """Ledger filters for a door: "" (all), "web", or "key-<id>"; BadFilter otherwise."""
    if not value:
        return {}
    if value == "web":
        return {"door": Generation.Door.WEB}
    prefix, _, key_id = value.partition("-")
    if prefix == "key" and key_id.isdigit() and len(key_id) < 19:
        return {"door": Generation.Door.API, "api_key_id": int(key_id)}
    raise BadFilter(value)


def generations(user: object, door: str) -> QuerySet[Generation]:
    """The person's ledger rows, newest first, through one door or all."""
    # The keys in a query of their own: a join could keep the database from reading just
    # one page of the person's rows in index order.
    return Generation.objects.filter(user=user, **door_filter(door)).prefetch_related("api_key")


def generation_door(row: Generation) -> str:
    if row.door == Generation.Door.WEB:
        return "Browser"
    return f"{row.api_key.name} ({row.api_key.masked})" if row.api_key else "API"


def generations_page(user: object, door: str, number: object) -> Page:
    return Paginator(generations(user, door), GENERATIONS_PER_PAGE).get_page(number)


GENERATION_COLUMNS = [
    "started (UTC)",
    "door",
    "model",
    "status",
    "prompt tokens",
    "completion tokens",
    "time to first token (ms)",
    "duration (ms)",
]


def generation_cells(row: Generation) -> list[object]:
    """A ledger row as CSV cells, in the order of `GENERATION_COLUMNS`."""
    return [
        row.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        generation_door(row),
        row.model,
        row.status,
        row.prompt_tokens,
        row.completion_tokens,
        row.ttft_ms,
        row.duration_ms,
    ]


def chart_period(today: date) -> reports.Period:
    return reports.Period(today - timedelta(days=CHART_DAYS - 1), today)


def model_tables(user_id: int, period: reports.Period) -> tuple[Table, Table, list]:
    """Tokens per model over the period, the same per day, and the chart's data."""
    summed, days = reports.parts_and_days(reports.rollups_in(period, user_id=user_id), "model")
    ordered = reports.by_tokens(summed)
    labels = {key: key[0] for key, _ in ordered}
    x_labels, series = reports.stacked(period, days, [key for key, _ in ordered], labels)
    models = Table(
        "models",
        f"Tokens by model, {period.start:%b %d} to {period.end:%b %d}",
        [Column("Model", TEXT), Column("Requests"), Column("Tokens"), Column("Share", SHARE)],
    )
    total = sum(figures.tokens for _, figures in ordered) or 1
    for (model,), figures in ordered:
        models.add(model, figures.requests, figures.tokens, figures.tokens / total)
    daily = Table(
        "daily",
        "Tokens per day and model",
        [Column("Day (UTC)", TEXT), *(Column(title) for title, _ in series), Column("Total")],
    )
    for index, day in enumerate(period.days):
        values = [values[index] for _, values in series]
        daily.add(day.isoformat(), *values, sum(values))
    return models, daily, [x_labels, series]


def doors_table(user_id: int, period: reports.Period, link: str) -> Table:
    """The person's use per door (the browser, each API key) over the period."""
    rows = reports.rollups_in(period, user_id=user_id)
    ordered = reports.by_tokens(reports.grouped(rows, "door", "api_key_id"))
    labels = reports.door_labels({key for key, _ in ordered})
    table = Table(
        "doors",
        f"By door, {period.start:%b %d} to {period.end:%b %d}",
        [Column("Door", TEXT), *OUTCOME_COLUMNS],
    )
    for (door, key), figures in ordered:
        value = "web" if door == Generation.Door.WEB else f"key-{key}" if key else ""
        table.add(
            labels[(door, key)],
            *outcome_cells(figures),
            link=f"{link}?door={value}#generations" if value else "",
            key=value,
        )
    return table


def door_choices(doors: Table, current: str) -> list[tuple[str, str, bool]]:
    """The generation list's door filters: (label, value, chosen), "All doors" first."""
    choices = [("All doors", "", not current)]
    for row, value in zip(doors.rows, doors.keys, strict=True):
        if value:
            choices.append((str(row[0]), value, value == current))
    return choices


def tables(user_id: int, today: date, link: str) -> dict[str, Table]:
    """Every table of the page, by name (for the CSV export)."""
    period = chart_period(today)
    models, daily, _ = model_tables(user_id, period)
    return {"models": models, "daily": daily, "doors": doors_table(user_id, period, link)}


def context(user: object, *, door: str, page: object, link: str) -> dict[str, object]:
    """Everything the Usage page shows about `user`; BadFilter for an unknown door."""
    door_filter(door)  # a bad filter is refused before any query
    today = datetime.now(UTC).date()
    user_id = user.pk  # type: ignore[attr-defined]
    period = chart_period(today)
    models, daily, (x_labels, series) = model_tables(user_id, period)
    doors = doors_table(user_id, period, link)
    page_of_rows = generations_page(user, door, page)
    for row in page_of_rows:
        row.door_label = generation_door(row)  # type: ignore[attr-defined]
    return {
        "person": user,
        "budgets": budgets(user, today),
        "period": period,
        "chart": charts.stacked_bars(x_labels, series) if models.rows else "",
        "models_table": models,
        "daily_table": daily,
        "doors_table": doors,
        "door": door,
        "door_choices": door_choices(doors, door),
        "page": page_of_rows,
    }


def export(user: object, name: str, *, door: str, link: str) -> StreamingHttpResponse:
    """One of the page's tables as CSV, or the person's generations (through `door`).

    KeyError for an unknown table, BadFilter for an unknown door.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    username = slugify(user.get_username()) or f"user-{user.pk}"  # type: ignore[attr-defined]
    if name == "generations":
        rows = (generation_cells(row) for row in generations(user, door).iterator(2000))
        return csv_response(f"usage-{username}-generations-{stamp}.csv", GENERATION_COLUMNS, rows)
    table = tables(user.pk, datetime.now(UTC).date(), link)[name]  # type: ignore[attr-defined]
    return table_csv(table, f"usage-{username}-{name}-{stamp}.csv")
