"""Time to first token as a small histogram, so that a median can be read from rollups.

Each rollup row counts its generations' times to first token in fixed buckets (one integer
column per bucket); summing the columns over any set of rows gives that set's histogram, and
the median is interpolated inside the bucket that holds it: exact to within one bucket.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

# Upper bounds (ms, inclusive) of the buckets; one more bucket holds everything slower.
BOUNDS_MS = (50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000)

# The rollup's column for each bucket, fastest first.
FIELDS = tuple(f"ttft_{index:02d}" for index in range(len(BOUNDS_MS) + 1))


def field_for(ms: int) -> str:
    """The column that counts a generation whose first token took `ms` milliseconds."""
    return FIELDS[bisect_left(BOUNDS_MS, max(ms, 0))]


def median(counts: Sequence[int]) -> int | None:
    """The median (ms) of a histogram given as counts per bucket; None when it is empty.

    Linear inside the bucket holding the middle value; the open last bucket answers with its
    lower bound (the median is at least that).
    """
    total = sum(counts)
    if not total:
        return None
    middle = total / 2
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= middle:
            low = BOUNDS_MS[index - 1] if index else 0
            if index == len(BOUNDS_MS):
                return low
            return round(low + (BOUNDS_MS[index] - low) * (middle - seen) / count)
        seen += count
    return None  # not reached: the counts add up to `total`
