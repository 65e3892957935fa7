"""What the pages need to know about the ways to sign in (a template context processor)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from accounts import oidc_discovery


def sign_in_options(request: HttpRequest) -> dict[str, object]:
    """`sso_label`: the single sign-on button's text, or "" when it is not configured;
    `password_login`: whether password sign-in and sign-up are on."""
    return {
        "sso_label": settings.OIDC_BUTTON_LABEL if oidc_discovery.configured() else "",
        "password_login": settings.PASSWORD_LOGIN,
    }
