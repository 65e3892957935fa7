"""The Audit page: admins read the audit log, filter it, page through it, export it."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.decorators import admin_required
from audit import export
from audit.filters import EntryFilter

ENTRIES_PER_PAGE = 50


@admin_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """Entries newest first, filtered by who, what and on what; 400 for a bad filter."""
    form = EntryFilter(request.GET)
    if not form.is_valid():
        return render(request, "console/audit.html", {"form": form}, status=400)
    paginator = Paginator(form.entries(), ENTRIES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return render(request, "console/audit.html", {"form": form, "page": page})


@admin_required
@require_GET
def audit_csv(request: HttpRequest) -> HttpResponse:
    """Every entry the filters match, as a streamed CSV file."""
    form = EntryFilter(request.GET)
    if not form.is_valid():
        return render(request, "console/audit.html", {"form": form}, status=400)
    name = f"audit-{timezone.now():%Y%m%d-%H%M%S}.csv"
    return StreamingHttpResponse(
        export.lines(form.entries()),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
