"""The Groups pages: admins create groups, set their limits, fill them with people and
delete them. Every change goes to the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from django.contrib import messages
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import groups as teams
from accounts.decorators import admin_required
from accounts.limit_forms import GroupNameForm, LimitsForm
from accounts.models import User
from audit import services as audit
from usage import remaining


@admin_required
def groups(request: HttpRequest) -> HttpResponse:
    """Every group with its member count and limits."""
    found = Group.objects.annotate(members=Count("user")).select_related("limits")
    rows = [
        (group, limits.values() if (limits := getattr(group, "limits", None)) else teams.UNSET)
        for group in found.order_by("name")
    ]
    return render(request, "console/groups.html", {"rows": rows})


@admin_required
def add_group(request: HttpRequest) -> HttpResponse:
    """A new group and, optionally, its limits."""
    data = request.POST if request.method == "POST" else None
    name_form, limits_form = GroupNameForm(data), LimitsForm(data)
    if data is not None and name_form.is_valid() and limits_form.is_valid():
        with transaction.atomic():
            group = teams.create_group(name_form.cleaned_data["name"], limits_form.values())
            audit.record(request, "group.created", group, after=teams.snapshot(group))
        messages.success(request, f"Group {group.name} created. Add its members below.")
        return redirect("console:group", group.pk)
    context = {"name_form": name_form, "limits_form": limits_form}
    return render(request, "console/group_new.html", context)


@admin_required
def group(request: HttpRequest, pk: int) -> HttpResponse:
    """A group: its name, limits, members and their tokens today and this month."""
    found = get_object_or_404(Group, pk=pk)
    data = request.POST if request.method == "POST" else None
    name_form = GroupNameForm(data, group=found, initial={"name": found.name})
    limits_form = LimitsForm.for_limits(teams.limits_of(found), data)
    if data is not None and name_form.is_valid() and limits_form.is_valid():
        _save_group(request, found, name_form.cleaned_data["name"], limits_form.values())
        return redirect("console:group", found.pk)
    return render(request, "console/group.html", _group_context(found, name_form, limits_form))


def _save_group(request: HttpRequest, found: Group, name: str, values: dict) -> None:
    with transaction.atomic():
        if name != found.name:
            before, after = teams.rename_group(found, name)
            audit.record(
                request, "group.changed", found, before={"name": before}, after={"name": after}
            )
        before, after = teams.set_limits(found, values)
        if before != after:
            audit.record(request, "limits.changed", found, before=before, after=after)
    messages.success(request, f"Group {found.name} saved.")


def _group_context(found: Group, name_form: GroupNameForm, limits_form: LimitsForm) -> dict:
    people = list(found.user_set.order_by("username"))
    ids = [person.pk for person in people]
    today = datetime.now(UTC).date()
    spent_today = remaining.tokens_by_person(ids, today, today)
    spent_month = remaining.tokens_by_person(ids, today.replace(day=1), today)
    return {
        "group": found,
        "name_form": name_form,
        "limits_form": limits_form,
        "members": [
            (person, spent_today.get(person.pk, 0), spent_month.get(person.pk, 0))
            for person in people
        ],
    }


@admin_required
@require_POST
def members(request: HttpRequest, pk: int) -> HttpResponse:
    """Add a person (by username) to the group, or remove one (by id)."""
    found = get_object_or_404(Group, pk=pk)
    if "remove" in request.POST:
        person = User.objects.filter(pk=_number(request.POST["remove"])).first()
        if person is not None and teams.remove_member(found, person):
            audit.record(request, "group.members", found, after={"removed": person.username})
            messages.success(request, f"{person.username} left {found.name}.")
        return redirect("console:group", found.pk)
    username = request.POST.get("username", "").strip()[:150]
    person = User.objects.filter(username__iexact=username).first() if username else None
    if person is None:
        messages.error(
            request, f"Nobody is called “{username}”." if username else "Enter a username."
        )
    elif teams.add_member(found, person):
        audit.record(request, "group.members", found, after={"added": person.username})
        messages.success(request, f"{person.username} joined {found.name}.")
    else:
        messages.info(request, f"{person.username} is in {found.name} already.")
    return redirect("console:group", found.pk)


def _number(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 19 else 0


@admin_required
def delete_group(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask, then delete a group (its members stay, without its limits)."""
    found = get_object_or_404(Group, pk=pk)
    if request.method == "POST":
        name = found.name
        with transaction.atomic():
            audit.record(request, "group.deleted", found, before=teams.snapshot(found))
            teams.delete_group(found)
        messages.success(request, f"Group {name} deleted.")
        return redirect("console:groups")
    return render(
        request, "console/group_delete.html", {"group": found, "count": found.user_set.count()}
    )
