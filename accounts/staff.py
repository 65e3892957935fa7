"""The admins' page of people: approve, promote, demote, deactivate."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import admin_required
from accounts.models import User


@admin_required
def users(request: HttpRequest) -> HttpResponse:
    """Everyone, those waiting for approval first."""
    query = request.GET.get("q", "").strip()[:150]
    people = User.objects.annotate(
        waiting=Case(
            When(role=User.Role.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    ).order_by("waiting", "-is_active", "username")
    if query:
        people = people.filter(username__icontains=query)
    page = Paginator(people, 50).get_page(request.GET.get("page"))
    pending_count = User.objects.filter(role=User.Role.PENDING, is_active=True).count()
    return render(
        request,
        "accounts/staff_users.html",
        {"page": page, "query": query, "pending_count": pending_count},
    )


def _other_user(request: HttpRequest, user_id: int) -> User | None:
    """The user to act on; None (with a message) when it is the admin themself."""
    person = get_object_or_404(User, pk=user_id)
    if person.pk == request.user.pk:
        messages.error(request, "You cannot change your own role or deactivate yourself.")
        return None
    return person


@admin_required
@require_POST
def approve(request: HttpRequest, user_id: int) -> HttpResponse:
    """One click: a pending account becomes a member."""
    person = get_object_or_404(User, pk=user_id)
    person.approve()
    messages.success(request, f"{person.username} can now sign in and chat.")
    return redirect("staff:users")


@admin_required
@require_POST
def set_role(request: HttpRequest, user_id: int) -> HttpResponse:
    """Promote to admin or make a member."""
    role = request.POST.get("role", "")
    if role not in {User.Role.ADMIN, User.Role.MEMBER}:
        messages.error(request, "Choose admin or member.")
        return redirect("staff:users")
    if person := _other_user(request, user_id):
        person.set_role(role)
        messages.success(request, f"{person.username} is now {person.get_role_display().lower()}.")
    return redirect("staff:users")


@admin_required
def deactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    """Ask first, then stop an account from signing in (its data is kept)."""
    person = _other_user(request, user_id)
    if person is None:
        return redirect("staff:users")
    if request.method == "POST":
        person.is_active = False
        person.save(update_fields=["is_active"])
        messages.success(request, f"{person.username} can no longer sign in.")
        return redirect("staff:users")
    return render(request, "accounts/staff_deactivate.html", {"person": person})


@admin_required
@require_POST
def reactivate(request: HttpRequest, user_id: int) -> HttpResponse:
    """Let a deactivated account sign in again."""
    person = get_object_or_404(User, pk=user_id)
    person.is_active = True
    person.save(update_fields=["is_active"])
    messages.success(request, f"{person.username} can sign in again.")
    return redirect("staff:users")
