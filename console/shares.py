"""The Shares page: admins see every shared link and revoke any of them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from accounts.decorators import admin_required
from conversations import shares
from conversations.models import Share

SHARES_PER_PAGE = 50


class ShareSearch(forms.Form):
    """Whose links, and whether to list those that no longer open."""

    owner = forms.CharField(required=False, max_length=150, label="Shared by")
    show = forms.ChoiceField(
        choices=[("active", "Links that still open"), ("all", "All links")],
        required=False,
        label="Show",
    )


@admin_required
def share_list(request: HttpRequest) -> HttpResponse:
    """Every share, newest first; by default only links that still open."""
    form = ShareSearch(request.GET)
    if not form.is_valid():
        return render(request, "console/shares.html", {"form": form}, status=400)
    found = Share.objects.select_related("owner", "conversation")
    if form.cleaned_data["show"] != "all":
        found = found.still_open()
    if owner := form.cleaned_data["owner"].strip():
        found = found.filter(owner__username__icontains=owner)
    page = Paginator(found, SHARES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "console/shares.html", {"form": form, "page": page})


@admin_required
def revoke_share(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask first; a POST revokes the link for every worker and viewer at once."""
    share = get_object_or_404(Share, pk=pk)
    if request.method == "POST":
        if shares.revoke(request, share):
            messages.success(request, f"The link to “{share.title}” no longer opens.")
        return redirect("console:shares")
    context = {"share": share, "cancel": reverse("console:shares")}
    return render(request, "conversations/share_revoke.html", context)
