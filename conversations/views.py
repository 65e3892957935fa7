"""Chat pages: the conversation page, the sidebar and its actions."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.models import User
from conversations import attachments, capabilities, fragments, model_picker, search, services
from conversations.forms import RenameForm, SettingsForm
from conversations.models import Conversation, Message
from conversations.reasoning import THINK_CHOICES
from conversations.stops import request_stop
from llm.catalog import model_names_sync
from usage import limits

MESSAGES_PER_PAGE = 50
CONVERSATIONS_PER_PAGE = 50


def _model_names(user: User) -> list[str]:
    """The catalog's models `user` may use (the picker shows only these)."""
    return limits.effective_limits(user).allowed(model_names_sync())


def _think_switch(conversation: Conversation) -> dict[str, Any]:
    """The think switch's context: shown only when the conversation's model can think."""
    return {"think_choices": THINK_CHOICES, "thinks": capabilities.thinks(conversation.model)}


def _current_id(request: HttpRequest) -> int | None:
    value = request.GET.get("current") or request.POST.get("current")
    return int(value) if value and value.isdigit() else None


def _sidebar_page(request: HttpRequest, query: str, number: object = 1) -> Any:
    conversations = Conversation.objects.for_sidebar(request.user).only("pk", "title", "pinned")
    if query:
        return search.results_page(conversations, query, number, CONVERSATIONS_PER_PAGE)
    return Paginator(conversations, CONVERSATIONS_PER_PAGE).get_page(number)


def _message_page(
    conversation: Conversation, before: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """The latest messages (before `before`), oldest first, and whether older ones exist."""
    messages = conversation.messages.order_by("-pk")
    if before is not None:
        messages = messages.filter(pk__lt=before)
    latest = list(messages[: MESSAGES_PER_PAGE + 1])
    has_older = len(latest) > MESSAGES_PER_PAGE
    latest = latest[:MESSAGES_PER_PAGE]
    latest.reverse()
    return [fragments.message_item(message) for message in latest], has_older


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: a new chat (the user's one empty draft)."""
    return redirect("conversations:detail", services.draft_for(request.user).pk)


@login_required
@require_POST
def new(request: HttpRequest) -> HttpResponse:
    return redirect("conversations:detail", services.draft_for(request.user).pk)


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A conversation: sidebar, model picker, the latest messages and the composer."""
    conversation = services.get_conversation_for_user(request.user, pk)
    items, has_older = _message_page(conversation)
    models = _model_names(request.user)
    if conversation.is_draft and (last := model_picker.last_choice(request.user)) in models:
        conversation.model = last  # a new chat starts with the person's last choice
    if not conversation.model and models:
        conversation.model = models[0]
    return render(
        request,
        "conversations/conversation.html",
        {
            "conversation": conversation,
            "items": items,
            "has_older": has_older,
            "first_id": items[0]["m"].pk if items else None,
            "page": _sidebar_page(request, ""),
            "q": "",
            "current_id": conversation.pk,
            "models": models,
            "model_choices": model_picker.choices(models),
            "model_missing": bool(conversation.model) and conversation.model not in models,
            "models_refused": not models and bool(model_names_sync()),
            "pending_images": attachments.pending(conversation),
            **_think_switch(conversation),
        },
    )


@login_required
def messages(request: HttpRequest, pk: int) -> HttpResponse:
    """Older messages, for the "Load earlier messages" button."""
    conversation = services.get_conversation_for_user(request.user, pk)
    before = request.GET.get("before", "")
    items, has_older = _message_page(conversation, int(before) if before.isdigit() else None)
    context = {
        "conversation": conversation,
        "items": items,
        "has_older": has_older,
        "first_id": items[0]["m"].pk if items else None,
    }
    return render(request, "conversations/parts.html#older", context)


@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    """The sidebar list (search, more pages)."""
    query = request.GET.get("q", "").strip()[:200]
    page = _sidebar_page(request, query, request.GET.get("page", 1))
    context = {"page": page, "q": query, "current_id": _current_id(request)}
    partial = "sidebar_page" if request.GET.get("more") else "sidebar_list"
    return render(request, f"conversations/parts.html#{partial}", context)


@login_required
def item(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = services.get_conversation_for_user(request.user, pk)
    context = {"c": conversation, "current_id": _current_id(request)}
    return render(request, "conversations/parts.html#sidebar_item", context)


@login_required
def rename(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename in place: the form (GET), then the updated sidebar entry (POST).

    A form submitted before htmx has taken it over (or without JavaScript) is a plain
    POST: it renames too, and goes back to the page it came from."""
    conversation = services.get_conversation_for_user(request.user, pk)
    context = {"c": conversation, "current_id": _current_id(request)}
    if request.method == "POST":
        form = RenameForm(request.POST)
        if form.is_valid():
            services.rename(conversation, form.cleaned_data["title"])
            if not request.htmx:
                return redirect("conversations:detail", context["current_id"] or conversation.pk)
            response = render(request, "conversations/parts.html#sidebar_item", context)
            if context["current_id"] == conversation.pk:
                title = {"conversation": conversation, "oob": True}
                response.content += render(request, "conversations/parts.html#title", title).content
            return response
    return render(request, "conversations/parts.html#rename_form", context)


@login_required
@require_POST
def pin(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = services.get_conversation_for_user(request.user, pk)
    services.toggle_pin(conversation)
    context = {"page": _sidebar_page(request, ""), "q": "", "current_id": _current_id(request)}
    return render(request, "conversations/parts.html#sidebar_list", context)


@login_required
@require_POST
def update_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """Save the model picked or the system prompt (sent by htmx, no page change)."""
    conversation = services.get_conversation_for_user(request.user, pk)
    form = SettingsForm(request.POST)
    if not form.is_valid():
        return HttpResponse(status=400)
    fields = []
    model = form.cleaned_data["model"]
    if model:
        if model not in _model_names(request.user):
            return HttpResponse("That model is not available to you.", status=400)
        conversation.model = model
        fields.append("model")
        model_picker.remember(request.user, model)
    if "system_prompt" in request.POST:
        conversation.system_prompt = form.cleaned_data["system_prompt"]
        fields.append("system_prompt")
    if fields:
        conversation.save(update_fields=fields)
    if request.htmx:
        context: dict[str, Any] = {"conversation": conversation}
        if "model" in fields:  # the think switch follows the model
            context.update(_think_switch(conversation), switch_oob=True)
        return render(request, "conversations/parts.html#settings_saved", context)
    return redirect("conversations:detail", conversation.pk)


@login_required
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask, then delete the conversation and everything in it."""
    conversation = services.get_conversation_for_user(request.user, pk)
    if request.method == "POST":
        if conversation.messages.filter(status=Message.Status.STREAMING).exists():
            # Stop first: a runner still writing would find its row gone.
            async_to_sync(request_stop)(conversation.pk)
        conversation.delete()
        if request.htmx:
            return HttpResponseClientRedirect(reverse("home"))
        return redirect("home")
    return render(request, "conversations/delete.html", {"conversation": conversation})
