"""Everyone's usage over a period, for the staff console: a stacked chart by model, person,
group or API key with its table, top people and models, browser vs API, failure and stop
rates, and the median time to first token per model. All read from the daily rollups.

"By group" counts a person's usage in each group they are in now (so groups may add up to
more than the total), and in "No group" when they are in none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from usage import charts, reports
from usage.reports import Figures, Period
from usage.tables import COUNT, OUTCOME_COLUMNS, SHARE, TEXT, Column, Table, outcome_cells

# What a chart can be split by: the rollup fields that make up each part.
DIMENSIONS = {
    "model": ("model",),
    "person": ("user_id",),
    "group": ("user__groups__name",),
    "key": ("door", "api_key_id"),
}
DIMENSION_TITLES = {
    "model": "Model",
    "person": "Person",
    "group": "Group",
    "key": "Door or API key",
}
TOP_PEOPLE = 10


def _labels(by: str, keys: list[tuple]) -> dict[tuple, str]:
    """A readable name for each part of a dimension."""
    if by == "person":
        names = reports.usernames({key[0] for key in keys})
        return {key: names.get(key[0], f"Deleted person #{key[0]}") for key in keys}
    if by == "group":
        return {key: key[0] if key[0] is not None else "No group" for key in keys}
    if by == "key":
        return reports.door_labels(set(keys), with_owner=True)
    return {key: str(key[0]) for key in keys}


@dataclass
class Overview:
    """The console's figures for one period."""

    period: Period
    by: str
    totals: Figures
    chart: str
    tables: dict[str, Table]

    @property
    def browser_share(self) -> float | None:
        return self._door_share("web")

    @property
    def api_share(self) -> float | None:
        return self._door_share("api")

    def _door_share(self, door: str) -> float | None:
        doors = self.tables["doors"]
        for row, key in zip(doors.rows, doors.keys, strict=True):
            if key == door:
                return row[4]  # type: ignore[return-value]
        return 0.0 if self.totals.requests else None


def build(period: Period, by: str, person_link: Callable[[int], str]) -> Overview:
    """Every figure of the console's usage page; `person_link(user_id)` links a person.

    Models, doors and totals come from the per-model rollup; the split by person, group or
    key and the top people from the per-person rollup (no models), each summing only the
    counters it shows.
    """
    people_rows, model_rows = reports.person_rollups_in(period), reports.model_rollups_in(period)
    models = reports.by_tokens(reports.grouped(model_rows, "model"))
    doors = reports.grouped(model_rows, "door")
    totals = Figures()
    for figures in doors.values():
        totals.add(figures)
    summed, days = reports.parts_and_days(
        model_rows if by == "model" else people_rows, *DIMENSIONS[by]
    )
    parts = reports.by_tokens(summed)
    labels = _labels(by, [key for key, _ in parts])
    x_labels, series = reports.stacked(period, days, [key for key, _ in parts], labels)
    if by == "person":
        people = parts
    else:
        people = reports.by_tokens(reports.grouped(people_rows, "user_id", counters=reports.PARTS))
    tables = {
        "breakdown": _breakdown(by, parts, labels, totals),
        "daily": _daily(period, by, series),
        "people": _people(people[:TOP_PEOPLE], totals, person_link),
        "models": _models(models),
        "doors": _doors(doors, totals),
    }
    chart = charts.stacked_bars(x_labels, series) if parts else ""
    return Overview(period, by, totals, chart, tables)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _breakdown(by: str, parts: list[tuple[tuple, Figures]], labels: dict, totals: Figures) -> Table:
    table = Table(
        "breakdown",
        f"By {DIMENSION_TITLES[by].lower()}",
        [
            Column(DIMENSION_TITLES[by], TEXT),
            Column("Requests"),
            Column("Tokens in"),
            Column("Tokens out"),
            Column("Tokens"),
            Column("Share of tokens", SHARE),
        ],
    )
    for key, figures in parts:
        table.add(
            labels[key],
            figures.requests,
            figures.prompt_tokens,
            figures.completion_tokens,
            figures.tokens,
            _share(figures.tokens, totals.tokens),
        )
    return table


def _daily(period: Period, by: str, series: list[tuple[str, list[int]]]) -> Table:
    table = Table(
        "daily",
        f"Tokens per day and {DIMENSION_TITLES[by].lower()}",
        [
            Column("Day (UTC)", TEXT),
            *(Column(title, COUNT) for title, _ in series),
            Column("Total"),
        ],
    )
    for index, day in enumerate(period.days):
        values = [values[index] for _, values in series]
        table.add(day.isoformat(), *values, sum(values))
    return table


def _people(
    people: list[tuple[tuple, Figures]], totals: Figures, person_link: Callable[[int], str]
) -> Table:
    names = reports.usernames({key[0] for key, _ in people})
    table = Table(
        "people",
        f"Top {TOP_PEOPLE} people",
        [
            Column("Person", TEXT),
            Column("Requests"),
            Column("Tokens"),
            Column("Share of tokens", SHARE),
            Column("Failed", SHARE),
        ],
    )
    for (user_id,), figures in people:
        table.add(
            names.get(user_id, f"Deleted person #{user_id}"),
            figures.requests,
            figures.tokens,
            _share(figures.tokens, totals.tokens),
            figures.failure_share,
            link=person_link(user_id) if user_id in names else "",
        )
    return table


def _models(models: list[tuple[tuple, Figures]]) -> Table:
    table = Table(
        "models",
        "Models",
        [Column("Model", TEXT), *OUTCOME_COLUMNS],
    )
    for (model,), figures in models:
        table.add(model, *outcome_cells(figures))
    return table


def _doors(doors: dict[tuple, Figures], totals: Figures) -> Table:
    table = Table(
        "doors",
        "Browser and API",
        [
            Column("Door", TEXT),
            Column("Requests"),
            Column("Share of requests", SHARE),
            Column("Tokens"),
            Column("Share of tokens", SHARE),
        ],
    )
    for door, title in (("web", "Browser"), ("api", "API")):
        figures = doors.get((door,), Figures())
        table.add(
            title,
            figures.requests,
            _share(figures.requests, totals.requests),
            figures.tokens,
            _share(figures.tokens, totals.tokens),
            key=door,
        )
    return table
