"""The API keys page: create a key (shown once), list them, revoke one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache

from accounts.key_forms import KeyForm
from accounts.models import ApiKey, User
from audit import services as audit
from llm.catalog import model_names_sync
from usage import limits


def audited(key: ApiKey) -> dict[str, object]:
    """What the audit log keeps of a new key: its owner and settings (never its secret)."""
    return {
        "owner": key.user.get_username(),
        "name": key.name,
        "models": key.allowed_models,
        "expires_at": key.expires_at,
        "tokens_per_day": key.tokens_per_day,
    }


def _usable_models(user: User) -> list[str]:
    """The catalog's models the person may use: a key can narrow them, never widen."""
    return limits.effective_limits(user).allowed(model_names_sync())


def _own_key(request: HttpRequest, key_id: int) -> ApiKey:
    """The signed-in person's key, or 404 (someone else's key looks like no key)."""
    return get_object_or_404(ApiKey, pk=key_id, user=request.user)


@never_cache
@login_required
def key_list(request: HttpRequest) -> HttpResponse:
    """List the person's keys; a valid POST creates one and shows its secret once."""
    usable = _usable_models(request.user)
    form = KeyForm(request.POST or None, model_names=usable)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            key, secret = ApiKey.issue(
                request.user,
                form.cleaned_data["name"],
                allowed_models=form.cleaned_data["models"],
                expires_at=form.expires_at(),
                tokens_per_day=form.cleaned_data["tokens_per_day"],
            )
            audit.record(request, "key.created", key, after=audited(key))
        # Rendered, not redirected: the secret must never sit in a session or a URL.
        context = {
            "key": key,
            "secret": secret,
            "base_url": request.build_absolute_uri("/").rstrip("/"),
            "example_model": (key.allowed_models or usable or ["llama3.2"])[0],
        }
        return render(request, "keys/created.html", context)
    keys = ApiKey.objects.filter(user=request.user)
    return render(request, "keys/list.html", {"form": form, "keys": keys})


@login_required
def revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    """Ask first; a POST revokes the key for every worker at once."""
    key = _own_key(request, key_id)
    if request.method == "POST":
        with audit.changes(request, "key.revoked", key, "revoked_at"):
            key.revoke()
        messages.success(
            request, f"The key “{key.name}” is revoked. Programs using it now get 401."
        )
        return redirect("keys:list")
    return render(request, "keys/revoke.html", {"key": key})
