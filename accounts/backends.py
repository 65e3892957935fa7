"""The PASSWORD_LOGIN switch, as an authentication backend placed before ModelBackend."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest


class PasswordSwitch:
    """Stops every password check while `PASSWORD_LOGIN` is off.

    Django's `authenticate()` stops at a backend that raises PermissionDenied, so no door that
    checks a password (the sign-in form, the Django admin's login) lets anyone in by one. It
    has no `get_user`: sessions are never tied to it, and sign-ins that need no password (the
    identity provider's, `manage.py signinlink`) are not affected.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if password is not None and not settings.PASSWORD_LOGIN:
            raise PermissionDenied("password sign-in is turned off")
        return None
