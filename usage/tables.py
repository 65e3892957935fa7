"""Tables of usage figures: one description serves the page (formatted) and the CSV (raw)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.http import StreamingHttpResponse

# How a column's values are shown: text as is, counts with thousands separators, shares as
# percentages, durations in milliseconds.
TEXT, COUNT, SHARE, MS = "text", "count", "share", "ms"

# A spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    title: str
    kind: str = COUNT


# After a row's label: how its generations went (from a `usage.reports.Figures`).
OUTCOME_COLUMNS = (
    Column("Requests"),
    Column("Tokens"),
    Column("Failed", SHARE),
    Column("Stopped", SHARE),
    Column("Median time to first token", MS),
    Column("Mean duration", MS),
)


def outcome_cells(figures: Any) -> tuple[object, ...]:
    """The cells of OUTCOME_COLUMNS for `figures`."""
    return (
        figures.requests,
        figures.tokens,
        figures.failure_share,
        figures.stop_share,
        figures.median_ttft_ms,
        figures.mean_duration_ms,
    )


@dataclass
class Table:
    """A named table: its columns, its rows of raw values, and per row an optional link and
    an optional key (what the row stands for, such as a door filter's value)."""

    name: str
    caption: str
    columns: list[Column]
    rows: list[list[object]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # "" for a row without a link
    keys: list[str] = field(default_factory=list)

    def add(self, *values: object, link: str = "", key: str = "") -> None:
        self.rows.append(list(values))
        self.links.append(link)
        self.keys.append(key)

    @property
    def display_rows(self) -> list[tuple[str, list[str]]]:
        """Each row's link and its cells as shown on the page."""
        return [
            (
                link,
                [
                    _shown(value, column.kind)
                    for value, column in zip(row, self.columns, strict=True)
                ],
            )
            for row, link in zip(self.rows, self.links, strict=True)
        ]

    @property
    def numeric(self) -> list[bool]:
        """Which columns hold numbers (right-aligned on the page)."""
        return [column.kind != TEXT for column in self.columns]


def _shown(value: object, kind: str) -> str:
    if value is None or value == "":
        return "—"
    if kind == COUNT:
        return f"{int(value):,}"  # type: ignore[call-overload]
    if kind == SHARE:
        return f"{float(value):.1%}"  # type: ignore[arg-type]
    if kind == MS:
        return f"{int(value):,} ms"  # type: ignore[call-overload]
    return str(value)


def _raw(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[Iterable[object]]) -> Iterator[str]:
    """CSV text line by line; text that a spreadsheet would run as a formula is quoted."""
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_raw(value) for value in row])


def csv_response(
    filename: str, header: list[str], rows: Iterable[Iterable[object]]
) -> StreamingHttpResponse:
    """A CSV download, streamed (a person's whole ledger can be long)."""
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def table_csv(table: Table, filename: str) -> StreamingHttpResponse:
    """A table as a CSV download, with raw numbers."""
    return csv_response(filename, [column.title for column in table.columns], table.rows)
