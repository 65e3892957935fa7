"""The Usage page: a person's own tokens, budgets and generations, and its CSV export."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from usage import person


@never_cache
@login_required
def usage_page(request: HttpRequest) -> HttpResponse:
    """The signed-in person's usage; `door` narrows the generations, `page` pages them."""
    link = reverse("usage:page")
    try:
        context = person.context(
            request.user,
            door=request.GET.get("door", ""),
            page=request.GET.get("page"),
            link=link,
        )
    except person.BadFilter:
        return HttpResponseBadRequest(person.BAD_DOOR)
    context["export_url"] = reverse("usage:export")
    return render(request, "usage/usage.html", context)


@never_cache
@login_required
def export(request: HttpRequest) -> HttpResponse:
    """The signed-in person's generations, or one table of their page, as CSV."""
    try:
        return person.export(
            request.user,
            request.GET.get("table", "generations"),
            door=request.GET.get("door", ""),
            link=reverse("usage:page"),
        )
    except person.BadFilter:
        return HttpResponseBadRequest(person.BAD_DOOR)
    except KeyError:
        return HttpResponseBadRequest(person.BAD_TABLE)
