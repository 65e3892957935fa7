"""Image attachments over HTTP: upload one to a conversation, remove a pending one, and
serve an image to who may see it (its owner, or a viewer of a share that shows it).

Anyone else gets 404, as for an id that does not exist. Images are served with the type
stored when their content was checked, `nosniff`, inline, and never cached publicly.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from conversations import attachments, services, shares
from conversations.models import Attachment, Share


@login_required
@require_POST
def upload(request: HttpRequest, pk: int) -> HttpResponse:
    """Check and keep one image (multipart field `image`); answers its pending thumbnail."""
    conversation = services.get_conversation_for_user(request.user, pk)
    try:
        attachment = attachments.store(conversation, request.FILES.get("image"))
    except attachments.Refused as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    return render(
        request,
        "conversations/attachments.html#pending",
        {"a": attachment, "conversation": conversation},
    )


@login_required
@require_POST
def remove(request: HttpRequest, pk: int, attachment_id: str) -> HttpResponse:
    """Delete a pending image (not yet sent) of the conversation."""
    conversation = services.get_conversation_for_user(request.user, pk)
    if not attachments.remove_pending(conversation, attachment_id):
        raise Http404("No such image")
    return HttpResponse("")


@require_GET
def image(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """An image, for the owner of its conversation only."""
    if not services.may_chat(request.user):
        raise Http404("No such image")
    found = Attachment.objects.filter(pk=attachment_id, owner=request.user).first()
    if found is None:
        raise Http404("No such image")
    return _serve(found)


@require_GET
def shared_image(request: HttpRequest, token: str, attachment_id: uuid.UUID) -> HttpResponse:
    """An image of a sent message that the share link `token` shows to this viewer."""
    share = shares.find(token)
    if share is None or not shares.may_view(share, request.user):
        raise Http404("No such image")
    found = Attachment.objects.filter(
        pk=attachment_id, conversation_id=share.conversation_id, message__isnull=False
    ).first()
    if found is None or not _shown(share, found):
        raise Http404("No such image")
    response = _serve(found)
    response["Referrer-Policy"] = "same-origin"
    return response


def _shown(share: Share, attachment: Attachment) -> bool:
    """A snapshot shows the images of its frozen messages; a live share every sent one."""
    if share.mode != Share.Mode.SNAPSHOT:
        return True
    frozen = (share.snapshot or {}).get("messages", [])
    return any(str(attachment.pk) in (m.get("images") or []) for m in frozen)


def _serve(attachment: Attachment) -> HttpResponse:
    try:
        handle = attachment.file.open("rb")
    except OSError:
        raise Http404("No such image") from None
    response = FileResponse(handle, content_type=attachment.content_type)
    response["Content-Disposition"] = "inline"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
