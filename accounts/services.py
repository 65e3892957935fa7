"""Account operations that span models and settings."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import User


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
