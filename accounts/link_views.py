"""The page a one-time sign-in link opens (see `accounts.signin_links`)."""

from __future__ import annotations

from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import signin_links
from audit import services as audit

# Sessions name ModelBackend, as a password sign-in's do (PASSWORD_LOGIN does not matter here).
BACKEND = "django.contrib.auth.backends.ModelBackend"


@never_cache
@require_http_methods(["GET", "POST"])
def sign_in_with_link(request: HttpRequest, token: str) -> HttpResponse:
    """Ask, then sign in as the link's admin (a GET alone signs no one in: link previews
    would use the link up)."""
    user = signin_links.account(token)
    if user is None:
        return render(request, "accounts/signin_link.html", {"user_of_link": None}, status=400)
    if request.method == "POST":
        login(request, user, backend=BACKEND)
        audit.record(request, "login.link", user, actor=user)
        return redirect("home")
    return render(request, "accounts/signin_link.html", {"user_of_link": user})
