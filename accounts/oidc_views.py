"""The pages of single sign-on: the start (off to the provider), the provider's callback, and
sign-out (which also ends the provider's session when it offers an `end_session_endpoint`).

Whatever goes wrong ends on the sign-in page with words a person can act on, never a 500:
the provider unreachable (502), the person refused by the provider or by this site (403), a
stale or replayed callback (400).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.views.generic import View
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
    OIDCLogoutView,
)

from accounts import oidc, oidc_discovery
from accounts.forms import LoginForm
from accounts.oidc_accounts import SignInRefused

log = logging.getLogger(__name__)

UNREACHABLE = (
    "The identity provider could not be reached, so you were not signed in. Try again in a "
    "moment; if it keeps failing, tell an admin."
)
STALE = "This sign-in had expired or was already used. Start again."
REJECTED = (
    "Your identity provider's answer did not pass this site's checks, so you were not signed "
    "in ({reason})."
)


def problem(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """The sign-in page, saying what went wrong."""
    form = LoginForm(request) if settings.PASSWORD_LOGIN else None
    context = {"form": form, "next": "", "sso_error": message}
    return render(request, "accounts/login.html", context, status=status)


class Start(OIDCAuthenticationRequestView):
    """Send the person to the provider, with a new state, nonce and PKCE challenge."""

    get_settings = staticmethod(oidc.setting)

    def __init__(self, **kwargs: Any) -> None:
        # The library reads the provider's endpoints here, before any error can be answered;
        # they are read in `get` instead (the properties below).
        View.__init__(self, **kwargs)

    @property
    def OIDC_OP_AUTH_ENDPOINT(self) -> str:
        return oidc.setting("OIDC_OP_AUTHORIZATION_ENDPOINT")

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return settings.OIDC_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc_discovery.configured():
            raise Http404("single sign-on is not configured")
        try:
            return super().get(request)
        except oidc_discovery.ProviderUnavailable as exc:
            log.warning("single sign-on could not start: %s", exc)
            return problem(request, UNREACHABLE, 502)


class Callback(OIDCAuthenticationCallbackView):
    """Where the provider sends the person back with a code (or an error)."""

    get_settings = staticmethod(oidc.setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc_discovery.configured():
            raise Http404("single sign-on is not configured")
        try:
            return super().get(request)
        except SuspiciousOperation:  # a state this session did not start, or used already
            return problem(request, STALE, 400)
        except oidc.TokenRejected as exc:
            log.warning("single sign-on refused the provider's answer: %s", exc)
            return problem(request, REJECTED.format(reason=exc), 403)
        except SignInRefused as refusal:
            return problem(request, refusal.message, refusal.status)
        except (oidc_discovery.ProviderUnavailable, requests.RequestException) as exc:
            return self._provider_failed(request, exc)

    def _provider_failed(self, request: HttpRequest, exc: Exception) -> HttpResponse:
        response = getattr(exc, "response", None)
        log.warning("single sign-on failed at the provider: %s", exc)
        if response is not None and 400 <= response.status_code < 500:
            return problem(
                request, "The identity provider did not accept this sign-in. " + STALE, 403
            )
        return problem(request, UNREACHABLE, 502)

    def login_failure(self) -> HttpResponse:
        error = self.request.GET.get("error", "")
        if error:
            detail = self.request.GET.get("error_description") or error
            message = f"The identity provider did not sign you in ({detail[:200]})."
            return problem(self.request, message, 403)
        return problem(self.request, STALE, 400)

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        if self.user.is_pending:
            return redirect("accounts:pending")
        return response


class Logout(OIDCLogoutView):
    """Sign out (POST only); then to the provider's sign-out when this was its session."""

    get_settings = staticmethod(oidc.setting)


def provider_logout_url(request: HttpRequest) -> str:
    """Where to send a person who signs out: the provider's `end_session_endpoint` when they
    signed in through it and it has one, back to the sign-in page afterwards; else that page."""
    login_url = resolve_url(settings.LOGOUT_REDIRECT_URL)
    id_token = request.session.get("oidc_id_token")
    if not id_token or not oidc_discovery.configured():
        return login_url
    try:
        end_session = oidc_discovery.endpoint("end_session_endpoint")
    except oidc_discovery.ProviderUnavailable:
        return login_url
    if not end_session:
        return login_url
    query = {
        "id_token_hint": id_token,
        "client_id": settings.OIDC_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(reverse("accounts:login")),
    }
    separator = "&" if "?" in end_session else "?"
    return f"{end_session}{separator}{urlencode(query)}"


start = Start.as_view()
callback = Callback.as_view()
