"""The conversation's think switch: whether (and how hard) its model reasons."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from conversations import services
from conversations.reasoning import THINK_CHOICES


class ThinkForm(forms.Form):
    think = forms.ChoiceField(choices=THINK_CHOICES, required=False)


@login_required
@require_POST
def update_think(request: HttpRequest, pk: int) -> HttpResponse:
    """Save the think switch (sent by htmx when it changes; a plain form post works too)."""
    conversation = services.get_conversation_for_user(request.user, pk)
    form = ThinkForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Pick off, on, low, medium or high for thinking.", status=400)
    conversation.think = form.cleaned_data["think"]
    conversation.save(update_fields=["think"])
    if request.htmx:
        return render(request, "conversations/parts.html#think_saved", {})
    return redirect("conversations:detail", conversation.pk)
