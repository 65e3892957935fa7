"""A person's console page: role, groups, effective limits and where each comes from, what is
left today and this month, their API keys (revoke any), a link to their usage. Admins set
the person's own limits and groups here; every change goes to the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import groups as teams
from accounts.decorators import admin_required
from accounts.limit_forms import LimitsForm
from accounts.models import ApiKey, User
from audit import services as audit
from usage import limits, remaining
from usage.person import budgets


class GroupsForm(forms.Form):
    """The groups a person is in."""

    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )


@admin_required
def person(request: HttpRequest, user_id: int) -> HttpResponse:
    """The person's page (and, on POST, their own limits)."""
    found = get_object_or_404(User, pk=user_id)
    data = request.POST if request.method == "POST" else None
    limits_form = LimitsForm.for_limits(teams.limits_of(found), data)
    if data is not None and limits_form.is_valid():
        with transaction.atomic():
            before, after = teams.set_limits(found, limits_form.values())
            if before != after:
                audit.record(request, "limits.changed", found, before=before, after=after)
        messages.success(request, f"{found.username}'s own limits saved.")
        return redirect("console:person", found.pk)
    groups_form = GroupsForm(initial={"groups": list(found.groups.all())})
    return render(request, "console/person.html", _context(found, limits_form, groups_form))


def _context(found: User, limits_form: LimitsForm, groups_form: GroupsForm) -> dict:
    today = datetime.now(UTC).date()
    keys = list(ApiKey.objects.filter(user=found))
    spent = remaining.tokens_by_key([key.pk for key in keys], today)
    return {
        "person": found,
        "effective": limits.resolve(found),
        "budgets": [
            (budget, max((budget.limit or 0) - budget.used, 0)) for budget in budgets(found, today)
        ],
        "keys": [(key, spent.get(key.pk, 0)) for key in keys],
        "limits_form": limits_form,
        "groups_form": groups_form,
        "person_groups": list(found.groups.order_by("name")),
    }


@admin_required
@require_POST
def set_groups(request: HttpRequest, user_id: int) -> HttpResponse:
    """Put the person in exactly the groups ticked."""
    found = get_object_or_404(User, pk=user_id)
    form = GroupsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Those groups do not exist any more. Try again.")
        return redirect("console:person", found.pk)
    with transaction.atomic():
        before, after = teams.set_groups(found, list(form.cleaned_data["groups"]))
        if before != after:
            audit.record(
                request, "group.members", found, before={"groups": before}, after={"groups": after}
            )
    messages.success(request, f"{found.username}'s groups saved.")
    return redirect("console:person", found.pk)


@admin_required
def revoke_key(request: HttpRequest, user_id: int, key_id: int) -> HttpResponse:
    """Ask, then revoke one of the person's keys for every worker at once."""
    key = get_object_or_404(ApiKey, pk=key_id, user_id=user_id)
    if request.method == "POST":
        with transaction.atomic():
            if key.revoked_at is None:
                key.revoke()
                after = {"owner": key.user.username, "revoked_at": key.revoked_at}
                audit.record(request, "key.revoked", key, before={"revoked_at": None}, after=after)
        messages.success(request, f"The key “{key.name}” of {key.user.username} is revoked.")
        return redirect("console:person", user_id)
    return render(request, "console/key_revoke.html", {"key": key})
