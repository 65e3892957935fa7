"""Account operations that span models and settings."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When

from accounts.models import User

# The roles an admin gives to people who are in (pending is only where sign-up starts).
GRANTABLE_ROLES = (User.Role.ADMIN, User.Role.MEMBER)


def signup_open() -> bool:
    """Whether the sign-up page takes new accounts (always, for the very first one)."""
    return settings.SIGNUP_MODE != "closed" or not User.objects.exists()


@transaction.atomic
def create_account(username: str, password: str, email: str = "") -> User:
    """Create an account with the role the sign-up mode gives; the first one is admin."""
    # Lock the table's first row (if any) so two simultaneous first sign-ups
    # cannot both become admin.
    first = not User.objects.select_for_update().order_by("pk")[:1].exists()
    if first:
        role = User.Role.ADMIN
    elif settings.SIGNUP_MODE == "open":
        role = User.Role.MEMBER
    else:
        role = User.Role.PENDING
    user = User(username=username, email=email, role=role)
    user.set_password(password)
    user.save()
    return user


def may_change_access(admin: User, person: User) -> bool:
    """Whether `admin` may change `person`'s role or deactivate them: anyone but themself."""
    return person.pk != admin.pk


def people(search: str = "") -> QuerySet[User]:
    """Everyone whose username contains `search`: those waiting for approval first, then the
    active before the deactivated, each by username."""
    found = User.objects.annotate(
        waiting=Case(
            When(role=User.Role.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    ).order_by("waiting", "-is_active", "username")
    return found.filter(username__icontains=search) if search else found


def waiting_count() -> int:
    """How many active accounts wait for an admin's approval."""
    return User.objects.filter(role=User.Role.PENDING, is_active=True).count()
