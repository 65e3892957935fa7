"""The People page: admins approve, promote, demote, deactivate and reactivate accounts."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import services
from accounts.decorators import admin_required
from accounts.models import User
from audit import services as audit

PEOPLE_PER_PAGE = 50


@admin_required
def people(request: HttpRequest) -> HttpResponse:
    """Everyone, those waiting for approval first; `q` searches by username."""
    query = request.GET.get("q", "").strip()[:150]
    page = Paginator(services.people(query), PEOPLE_PER_PAGE).get_page(request.GET.get("page"))
    context = {"page": page, "query": query, "pending_count": services.waiting_count()}
    return render(request, "console/people.html", context)


def _other_person(request: HttpRequest, user_id: int) -> User | None:
    """The person to act on; None (with a message) when it is the admin themself."""
    person = get_object_or_404(User, pk=user_id)
    if not services.may_change_access(request.user, person):
        messages.error(request, "You cannot change your own role or deactivate yourself.")
        return None
    return person


@admin_required
@require_POST
def approve(request: HttpRequest, user_id: int) -> HttpResponse:
    """One click: a pending account becomes a member."""
    person = get_object_or_404(User, pk=user_id)
    with audit.changes(request, "account.approved", person, "role"):
        person.approve()
    messages.success(request, f"{person.username} can now sign in and chat.")
    return redirect("console:people")


@admin_required
@require_POST
def set_role(request: HttpRequest, user_id: int) -> HttpResponse:
    """Promote to admin or make a member."""
    role = request.POST.get("role", "")
    if role not in services.GRANTABLE_ROLES:
        messages.error(request, "Choose admin or member.")
        return redirect("console:people")
    if person := _other_person(request, user_id):
        with audit.changes(request, "account.role", person, "role"):
            person.set_role(role)
        messages.success(request, f"{person.username} is now {person.get_role_display().lower()}.")
    return redirect("console:people")


@admin_required
def deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    """Ask first, then stop an account from signing in (its data is kept)."""
    person = _other_person(request, user_id)
    if person is None:
        return redirect("console:people")
    if request.method == "POST":
        with audit.changes(request, "account.deactivated", person, "is_active"):
            person.deactivate()
        messages.success(request, f"{person.username} can no longer sign in.")
        return redirect("console:people")
    return render(request, "console/deactivate.html", {"person": person})


@admin_required
@require_POST
def reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    """Let a deactivated account sign in again."""
    person = get_object_or_404(User, pk=user_id)
    with audit.changes(request, "account.reactivated", person, "is_active"):
        person.reactivate()
    messages.success(request, f"{person.username} can sign in again.")
    return redirect("console:people")
