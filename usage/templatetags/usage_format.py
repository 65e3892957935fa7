"""Number formats for the usage pages: counts with thousands separators, shares in percent."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def count(value: object) -> str:
    """12345 -> "12,345"; nothing -> "—"."""
    if value is None or value == "":
        return "—"
    return f"{int(value):,}"  # type: ignore[call-overload]


@register.filter
def percent(value: object) -> str:
    """0.1234 -> "12.3 %"; nothing -> "—"."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.1%}"  # type: ignore[arg-type]
