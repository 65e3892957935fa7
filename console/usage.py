"""The console's usage pages: everyone's usage over a period, and one person's Usage page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from accounts.decorators import admin_required
from accounts.models import User
from usage import overview, person
from usage.reports import Period
from usage.tables import table_csv

# Days back from today (included) for each preset period.
PRESETS = {"day": 1, "week": 7, "month": 30}
LONGEST_DAYS = 366
BAD_TABLE = "Unknown table: use table=breakdown, daily, people, models or doors."


class PeriodForm(forms.Form):
    """Which days to show (UTC) and what to split the chart by."""

    period = forms.ChoiceField(
        choices=[
            ("day", "Today"),
            ("week", "Last 7 days"),
            ("month", "Last 30 days"),
            ("custom", "Custom"),
        ],
        required=False,
    )
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    by = forms.ChoiceField(
        label="Split by",
        choices=[(name, title) for name, title in overview.DIMENSION_TITLES.items()],
        required=False,
    )

    def clean(self) -> dict:
        data = super().clean() or {}
        data["period"] = data.get("period") or "month"
        data["by"] = data.get("by") or "model"
        if data["period"] == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError("A custom period needs a first and a last day.")
            if end < start:
                raise forms.ValidationError("The last day comes before the first.")
            if (end - start).days >= LONGEST_DAYS:
                raise forms.ValidationError(f"Choose at most {LONGEST_DAYS} days.")
        return data

    def chosen(self, today: date) -> Period:
        """The period asked for (call after is_valid)."""
        data = self.cleaned_data
        if data["period"] == "custom":
            return Period(data["start"], data["end"])
        return Period(today - timedelta(days=PRESETS[data["period"]] - 1), today)


def _person_link(user_id: int) -> str:
    return reverse("console:usage_person", args=[user_id])


def _overview(request: HttpRequest) -> tuple[PeriodForm, overview.Overview | None]:
    form = PeriodForm(request.GET)
    if not form.is_valid():
        return form, None
    period = form.chosen(datetime.now(UTC).date())
    return form, overview.build(period, form.cleaned_data["by"], _person_link)


@admin_required
def usage(request: HttpRequest) -> HttpResponse:
    """Everyone's usage over a period: chart, tables, shares and rates."""
    form, figures = _overview(request)
    context = {"form": form, "overview": figures, "query": request.GET.urlencode()}
    return render(request, "console/usage.html", context, status=200 if figures else 400)


@admin_required
def usage_export(request: HttpRequest) -> HttpResponse:
    """One table of the usage page as CSV, for the same period and split."""
    form, figures = _overview(request)
    if figures is None:
        return HttpResponseBadRequest(" ".join(form.non_field_errors() + _field_errors(form)))
    table = figures.tables.get(request.GET.get("table", ""))
    if table is None:
        return HttpResponseBadRequest(BAD_TABLE)
    period = figures.period
    return table_csv(table, f"usage-{table.name}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv")


def _field_errors(form: forms.Form) -> list[str]:
    return [
        f"{name}: {error}"
        for name, errors in form.errors.items()
        if name != "__all__"
        for error in errors
    ]


@admin_required
def usage_person(request: HttpRequest, user_id: int) -> HttpResponse:
    """A person's Usage page, as they see it, for an admin."""
    someone = get_object_or_404(User, pk=user_id)
    link = reverse("console:usage_person", args=[user_id])
    try:
        context = person.context(
            someone, door=request.GET.get("door", ""), page=request.GET.get("page"), link=link
        )
    except person.BadFilter:
        return HttpResponseBadRequest(person.BAD_DOOR)
    context.update(
        staff_view=True, export_url=reverse("console:usage_person_export", args=[user_id])
    )
    return render(request, "usage/usage.html", context)


@admin_required
def usage_person_export(request: HttpRequest, user_id: int) -> HttpResponse:
    """A person's generations, or a table of their Usage page, as CSV, for an admin."""
    someone = get_object_or_404(User, pk=user_id)
    try:
        return person.export(
            someone,
            request.GET.get("table", "generations"),
            door=request.GET.get("door", ""),
            link=reverse("console:usage_person", args=[user_id]),
        )
    except person.BadFilter:
        return HttpResponseBadRequest(person.BAD_DOOR)
    except KeyError:
        return HttpResponseBadRequest(person.BAD_TABLE)
