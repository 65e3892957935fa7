"""Groups (teams, Django's `auth.Group`) and the limits admins set on groups and people.

Each change returns what the audit log keeps of it (values before and after); callers record
it. A limits row with nothing set is removed: no row and an empty row mean the same.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import transaction

from accounts.models import GroupLimits, Limits, PersonLimits, User

UNSET: dict[str, object] = {name: None for name in (*Limits.LIMIT_FIELDS, "models")}


def limits_row(owner: Group | User) -> Limits | None:
    """The limits row of a group or a person, if any."""
    if isinstance(owner, Group):
        return GroupLimits.objects.filter(group=owner).first()
    return PersonLimits.objects.filter(user=owner).first()


def limits_of(owner: Group | User) -> dict[str, object]:
    """The limits set on a group or a person (None where not set)."""
    row = limits_row(owner)
    return row.values() if row is not None else dict(UNSET)


@transaction.atomic
def set_limits(
    owner: Group | User, values: dict[str, object]
) -> tuple[dict[str, object], dict[str, object]]:
    """Set (None: unset) the limits named in `values` on a group or a person; the limits
    before and after."""
    row = limits_row(owner)
    before = row.values() if row is not None else dict(UNSET)
    if row is None:
        row = GroupLimits(group=owner) if isinstance(owner, Group) else PersonLimits(user=owner)
    for name, value in values.items():
        if name not in UNSET:
            raise ValueError(f"no limit is called {name!r}")
        setattr(row, name, (value or None) if name == "models" else value)
    if row.is_empty:
        if row.pk is not None:
            row.delete()
    else:
        row.save()
    return before, row.values()


@transaction.atomic
def create_group(name: str, values: dict[str, object] | None = None) -> Group:
    """A new group, with the limits in `values` if any."""
    group = Group.objects.create(name=name)
    if values:
        set_limits(group, values)
    return group


def rename_group(group: Group, name: str) -> tuple[str, str]:
    """Give a group a new name; the names before and after."""
    before = group.name
    group.name = name
    group.save(update_fields=["name"])
    return before, name


def snapshot(group: Group) -> dict[str, object]:
    """What the audit log keeps of a group: name, members, limits."""
    return {
        "name": group.name,
        "members": sorted(group.user_set.values_list("username", flat=True)),
        "limits": limits_of(group),
    }


def delete_group(group: Group) -> None:
    """Delete a group and its limits; its members stay, without it."""
    group.delete()


def add_member(group: Group, person: User) -> bool:
    """Put a person in a group; False when they were in it already."""
    if group.user_set.filter(pk=person.pk).exists():
        return False
    group.user_set.add(person)
    return True


def remove_member(group: Group, person: User) -> bool:
    """Take a person out of a group; False when they were not in it."""
    if not group.user_set.filter(pk=person.pk).exists():
        return False
    group.user_set.remove(person)
    return True


def set_groups(person: User, groups: list[Group]) -> tuple[list[str], list[str]]:
    """Make `groups` the person's groups; their group names before and after."""
    before = sorted(person.groups.values_list("name", flat=True))
    person.groups.set(groups)
    return before, sorted(group.name for group in groups)
