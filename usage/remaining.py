"""Tokens spent per API key and per person over days (UTC), for the console's person and
group pages: one query on the daily rollups each."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db.models import F, Sum

from usage.models import DailyUsage


def tokens_by_key(key_ids: Iterable[int], day: date) -> dict[int, int]:
    """Tokens spent through each key on `day` (keys with none are absent)."""
    rows = (
        DailyUsage.objects.filter(api_key_id__in=list(key_ids), day=day)
        .values("api_key_id")
        .annotate(total=Sum(F("prompt_tokens") + F("completion_tokens")))
        .order_by()
    )
    return {row["api_key_id"]: int(row["total"] or 0) for row in rows}


def tokens_by_person(user_ids: Iterable[int], start: date, end: date) -> dict[int, int]:
    """Tokens each person spent on days from `start` to `end`, both included."""
    rows = (
        DailyUsage.objects.filter(user_id__in=list(user_ids), day__gte=start, day__lte=end)
        .values("user_id")
        .annotate(total=Sum(F("prompt_tokens") + F("completion_tokens")))
        .order_by()
    )
    return {row["user_id"]: int(row["total"] or 0) for row in rows}
