"""The conversation's generation parameters panel: saving it (sent by htmx)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from conversations import services
from conversations.parameters import ParametersForm


@login_required
@require_POST
def update_parameters(request: HttpRequest, pk: int) -> HttpResponse:
    """Save temperature, top_p, max tokens, context length and seed (blank = default)."""
    conversation = services.get_conversation_for_user(request.user, pk)
    form = ParametersForm(request.POST, instance=conversation)
    if not form.is_valid():
        return HttpResponse(form.summary(), status=400, content_type="text/plain; charset=utf-8")
    form.save()
    if request.htmx:
        return render(
            request, "conversations/parts.html#parameters_saved", {"conversation": conversation}
        )
    return redirect("conversations:detail", conversation.pk)
