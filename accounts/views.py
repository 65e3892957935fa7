"""Sign up, sign in, sign out, change password, and the waiting page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters

from accounts import services, throttle
from accounts.forms import LoginForm, SignupForm
from audit import services as audit


@sensitive_post_parameters("password1", "password2")
def signup(request: HttpRequest) -> HttpResponse:
    """Create an account; the sign-up mode decides whether it waits for approval."""
    if request.user.is_authenticated:
        return redirect("home")
    if not settings.PASSWORD_LOGIN or not services.signup_open():
        return render(request, "accounts/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.create_account(
            form.cleaned_data["username"],
            form.cleaned_data["password1"],
            form.cleaned_data.get("email", ""),
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if user.is_pending:
            return redirect("accounts:pending")
        messages.success(request, f"Welcome, {user.username}.")
        return redirect("home")
    first = not services.User.objects.exists()
    mode = "open" if first else settings.SIGNUP_MODE
    context = {"form": form, "signup_mode": mode, "first": first}
    return render(request, "accounts/signup.html", context)


@sensitive_post_parameters("password")
def login_view(request: HttpRequest) -> HttpResponse:
    """Sign in, refusing further attempts once a username or address has failed too often.

    The attempt is counted before the password is checked (see `accounts.throttle`).
    """
    if not settings.PASSWORD_LOGIN:
        return password_login_off(request)
    if request.method == "GET" and not services.User.objects.exists():
        return redirect("accounts:signup")  # a new install: the first account becomes admin
    form = LoginForm(request, data=request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "POST":
        username = request.POST.get("username", "")[:150]
        address = throttle.client_address(request)
        verdict = throttle.attempt(username, address)
        if not verdict.allowed:
            if throttle.first_refusal(username, address, verdict.retry_after):
                after = {"username": username, "retry_after": verdict.retry_after}
                audit.record(request, "login.throttled", username, after=after)
            form = LoginForm(request, initial={"username": username})
            context = {"form": form, "next": next_url, "throttled": verdict.message}
            response = render(request, "accounts/login.html", context)
            response.status_code = 429
            response["Retry-After"] = str(verdict.retry_after)
            return response
        if form.is_valid():
            user = form.get_user()
            login(request, user)
            throttle.record_success(username, address)
            if user.is_pending:
                return redirect("accounts:pending")
            safe = url_has_allowed_host_and_scheme(
                next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            )
            return redirect(next_url if safe and next_url else "home")
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


def password_login_off(request: HttpRequest) -> HttpResponse:
    """The sign-in page with single sign-on alone (PASSWORD_LOGIN=0); a password is refused."""
    status = 403 if request.method == "POST" else 200
    error = "Password sign-in is turned off here. Use the button below." if status == 403 else ""
    next_url = request.GET.get("next", "")
    context = {"form": None, "next": next_url, "sso_error": error}
    return render(request, "accounts/login.html", context, status=status)


@login_required
def pending(request: HttpRequest) -> HttpResponse:
    """The page a new account sees until an admin approves it."""
    if not request.user.is_pending:
        return redirect("home")
    return render(request, "accounts/pending.html")
