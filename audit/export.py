"""The audit log as CSV, streamed row by row (the log may be long)."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from audit.models import Entry

HEADER = ["when", "actor", "action", "target_type", "target_id", "target", "address"]
HEADER += ["before", "after"]
CHUNK = 2000
# A cell starting with one of these is a formula to a spreadsheet: it is quoted with "'".
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class _Line:
    """A file-like object whose write() returns the line, for csv.writer."""

    def write(self, text: str) -> str:
        return text


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)


def row(entry: Entry) -> list[str]:
    """One entry's cells, in HEADER's order."""
    values = [
        entry.when.isoformat(),
        entry.actor_name,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.target_label,
        entry.address,
        _json(entry.before),
        _json(entry.after),
    ]
    return [_cell(value) for value in values]


async def lines(entries: QuerySet[Entry]) -> AsyncIterator[str]:
    """The CSV text of `entries`, a header line first, reading the database in chunks."""
    writer = csv.writer(_Line())
    yield writer.writerow(HEADER)
    async for entry in entries.aiterator(chunk_size=CHUNK):
        yield writer.writerow(row(entry))
