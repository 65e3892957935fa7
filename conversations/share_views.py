"""Share pages: the share dialog, the shared page and its fork, the Shared links page.

The dialog is an htmx partial on the chat page and a plain page without JavaScript. The
shared page is read-only, marked noindex, never cached, and sent with
`Referrer-Policy: same-origin`. Updating, changing the expiry of and revoking a share is for
its owner or an admin: anyone else gets 404, as for a share that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.text import Truncator
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from conversations import fragments, services, shares
from conversations.models import Message, Share
from conversations.share_forms import ExpiryForm, ShareFilter, ShareForm

SHARES_PER_PAGE = 50
DESCRIPTION_CHARS = 200


# -- the dialog -----------------------------------------------------------------------


@never_cache
@login_required
def new_share(request: HttpRequest, pk: int) -> HttpResponse:
    """The share dialog (GET) and the new link (a valid POST)."""
    conversation = services.get_conversation_for_user(request.user, pk)
    form = ShareForm(request.POST or None, anyone_allowed=shares.anyone_allowed())
    context: dict[str, Any] = {"conversation": conversation, "form": form}
    status = 200
    if request.method == "POST":
        if form.is_valid():
            share, token = shares.create(request, conversation, **form.options())
            context |= {"share": share, "link": shares.absolute_link(request, token)}
        else:
            status = 400
    template = (
        "conversations/share_parts.html#dialog"
        if request.htmx
        else "conversations/share_dialog.html"
    )
    return render(request, template, context, status=status)


# -- the shared page ------------------------------------------------------------------


def shared(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only page a link opens (404 for any link that does not open)."""
    share = shares.find(token)
    if share is None:
        raise Http404("No such link")
    if not shares.may_view(share, request.user):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        raise Http404("No such link")
    shares.record_view(share)
    items = [fragments.message_item(message) for message in shares.shown_messages(share)]
    context = {
        "share": share,
        "token": token,
        "title": shares.shown_title(share),
        "system_prompt": shares.shown_system_prompt(share),
        "items": items,
        "may_fork": services.may_chat(request.user),
        "description": _description(items) if share.visibility == Share.Visibility.ANYONE else "",
    }
    response = render(request, "conversations/share.html", context)
    return _private(response)


def _private(response: HttpResponse) -> HttpResponse:
    """Never cached, never indexed, and the link never sent to another site."""
    add_never_cache_headers(response)
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _description(items: list[dict[str, Any]]) -> str:
    """The first message's words, for an "anyone" link's Open Graph description."""
    for item in items:
        message: Message = item["m"]
        if message.content.strip():
            return Truncator(" ".join(message.content.split())).chars(DESCRIPTION_CHARS)
    return ""


@require_POST
def fork(request: HttpRequest, token: str) -> HttpResponse:
    """Continue in my account: the shared messages become a new conversation of mine."""
    share = shares.find(token)
    if share is None:
        raise Http404("No such link")
    if not services.may_chat(request.user):
        if not request.user.is_authenticated:
            return redirect_to_login(reverse("conversations:shared", args=[token]))
        raise Http404("No such link")
    conversation = shares.fork(share, request.user)
    messages.success(request, "This is your own copy of the shared chat: go on with it.")
    return redirect("conversations:detail", conversation.pk)


# -- the Shared links page ------------------------------------------------------------


@never_cache
@login_required
def share_list(request: HttpRequest) -> HttpResponse:
    """The person's shares, newest first; revoked and expired ones hidden on request."""
    form = ShareFilter(request.GET)
    if not form.is_valid():
        return render(request, "conversations/share_list.html", {"form": form}, status=400)
    found = Share.objects.filter(owner=request.user).select_related("conversation")
    if form.hides_inactive():
        found = found.still_open()
    page = Paginator(found, SHARES_PER_PAGE).get_page(request.GET.get("page"))
    rows = [{"share": share, "link": shares.link(request, share)} for share in page]
    context = {"form": form, "page": page, "rows": rows, "expiry_form": ExpiryForm()}
    return render(request, "conversations/share_list.html", context)


def managed_share(request: HttpRequest, pk: int) -> Share:
    """The share if the signed-in person owns it or is an admin; 404 otherwise."""
    share = Share.objects.select_related("conversation", "owner").filter(pk=pk).first()
    user = request.user
    if share is None or not (share.owner_id == user.pk or getattr(user, "is_admin", False)):
        raise Http404("No such link")
    return share


@login_required
@require_POST
def share_update(request: HttpRequest, pk: int) -> HttpResponse:
    """Take a snapshot again, under the same link."""
    share = managed_share(request, pk)
    if share.mode != Share.Mode.SNAPSHOT or not share.is_active:
        return HttpResponse("Only a snapshot link that still opens can be updated.", status=400)
    shares.retake(share)
    messages.success(request, f"The link to “{share.title}” now shows the chat as it is now.")
    return redirect("conversations:shares")


@never_cache
@login_required
def share_expiry(request: HttpRequest, pk: int) -> HttpResponse:
    """Change when a link stops opening (a plain page when the form needs correcting)."""
    share = managed_share(request, pk)
    form = ExpiryForm(request.POST or None)
    if request.method == "POST":
        if share.revoked_at is not None or share.conversation_id is None:
            return HttpResponse("A revoked link stays revoked.", status=400)
        if form.is_valid():
            shares.set_expiry(share, form.expires_at())
            messages.success(request, f"The expiry of the link to “{share.title}” is changed.")
            return redirect("conversations:shares")
    status = 400 if form.is_bound else 200
    return render(
        request, "conversations/share_expiry.html", {"share": share, "form": form}, status=status
    )


@login_required
def share_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask first; a POST revokes the link for every worker and viewer at once."""
    share = managed_share(request, pk)
    if request.method == "POST":
        shares.revoke(request, share)
        messages.success(request, f"The link to “{share.title}” no longer opens.")
        return redirect("conversations:shares")
    context = {"share": share, "cancel": reverse("conversations:shares")}
    return render(request, "conversations/share_revoke.html", context)
