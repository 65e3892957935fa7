"""Project-level views: health and the CSRF failure page."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from chatsite.redis import ping_redis


def health(request: HttpRequest) -> JsonResponse:
    """Report whether the database and Redis answer; 503 when either does not."""
    checks = {"database": _database_ok(), "redis": ping_redis()}
    ok = all(checks.values())
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A readable page instead of Django's bare 403 when a form's CSRF token is missing."""
    return render(request, "csrf_failure.html", {"reason": reason}, status=403)
