"""Usage charts drawn on the server as SVG with pygal, to put inline in a page.

Pygal's SVG carries a script with the chart's settings for its optional tooltips; an XML
filter removes it, so the SVG is plain markup (labels escaped by the XML serializer) that
needs no JavaScript. The numbers are always in a table beside the chart as well.
"""

from __future__ import annotations

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

# Distinct on light and dark backgrounds; the last one is for "Other".
_COLORS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)

_STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#777",
    foreground_strong="#777",
    foreground_subtle="#bbb",
    font_family="system-ui, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    colors=_COLORS,
)


def stacked_bars(
    x_labels: list[str], series: list[tuple[str, list[int]]], *, y_title: str = "Tokens"
) -> SafeString:
    """A stacked bar chart: one bar per x label, one colored part per series."""
    chart = pygal.StackedBar(
        js=[],
        disable_xml_declaration=True,
        width=800,
        height=340,
        style=_STYLE,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(len(series), 4) or 1,
        truncate_legend=40,
        x_label_rotation=-45 if len(x_labels) > 10 else 0,
        y_title=y_title,
        show_minor_x_labels=len(x_labels) <= 31,
        x_labels_major_every=max(len(x_labels) // 15, 1),
        value_formatter=lambda value: f"{value:,.0f}",
        print_values=False,
    )
    chart.x_labels = x_labels
    for title, values in series:
        chart.add(title, values)
    chart.add_xml_filter(_for_inline)
    # The serializer escapes every label and title that came from the data.
    return mark_safe(chart.render(is_unicode=True))


def _for_inline(root):  # type: ignore[no-untyped-def]
    """The chart's XML tree less its script elements (pygal's tooltip settings), hidden from
    assistive technologies: the figure around it names it, the table beside it has its
    numbers."""
    root.set("aria-hidden", "true")
    root.set("focusable", "false")
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    return root
