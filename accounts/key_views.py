"""The API keys page: create a key (shown once), list them, revoke one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache

from accounts.key_forms import KeyForm
from accounts.models import ApiKey
from llm.catalog import model_names_sync


def _own_key(request: HttpRequest, key_id: int) -> ApiKey:
    """The signed-in person's key, or 404 (someone else's key looks like no key)."""
    return get_object_or_404(ApiKey, pk=key_id, user=request.user)


@never_cache
@login_required
def key_list(request: HttpRequest) -> HttpResponse:
    """List the person's keys; a valid POST creates one and shows its secret once."""
    form = KeyForm(request.POST or None, model_names=model_names_sync())
    if request.method == "POST" and form.is_valid():
        key, secret = ApiKey.issue(
            request.user,
            form.cleaned_data["name"],
            allowed_models=form.cleaned_data["models"],
            expires_at=form.expires_at(),
        )
        # Rendered, not redirected: the secret must never sit in a session or a URL.
        context = {
            "key": key,
            "secret": secret,
            "base_url": request.build_absolute_uri("/").rstrip("/"),
            "example_model": (key.allowed_models or model_names_sync() or ["llama3.2"])[0],
        }
        return render(request, "keys/created.html", context)
    keys = ApiKey.objects.filter(user=request.user)
    return render(request, "keys/list.html", {"form": form, "keys": keys})


@login_required
def revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    """Ask first; a POST revokes the key for every worker at once."""
    key = _own_key(request, key_id)
    if request.method == "POST":
        key.revoke()
        messages.success(
            request, f"The key “{key.name}” is revoked. Programs using it now get 401."
        )
        return redirect("keys:list")
    return render(request, "keys/revoke.html", {"key": key})
