"""Downloads of conversations: one as Markdown or JSON, all of a person's as streamed JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.views.decorators.http import require_GET

from conversations import exports, services
from conversations.models import Conversation

BATCH_BYTES = 64 * 1024


def _filename(conversation: Conversation, extension: str) -> str:
    return f"{slugify(conversation.title)[:60] or 'chat'}-{conversation.pk}.{extension}"


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    return HttpResponse(
        body,
        content_type=content_type,
        headers={"Content-Disposition": content_disposition_header(True, filename)},
    )


@login_required
@require_GET
def export_markdown(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = services.get_conversation_for_user(request.user, pk)
    body = exports.as_markdown(conversation)
    return _download(body, "text/markdown; charset=utf-8", _filename(conversation, "md"))


@login_required
@require_GET
def export_json(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = services.get_conversation_for_user(request.user, pk)
    body = exports.as_json(conversation)
    return _download(body, "application/json", _filename(conversation, "json"))


def _next_batch(pieces: Iterator[str]) -> bytes:
    """The next pieces of the document, about BATCH_BYTES of them (b"" at the end)."""
    batch: list[bytes] = []
    size = 0
    for piece in pieces:
        data = piece.encode()
        batch.append(data)
        size += len(data)
        if size >= BATCH_BYTES:
            break
    return b"".join(batch)


async def _in_batches(pieces: Iterator[str]) -> AsyncIterator[bytes]:
    """The pieces, read from the database thread a batch at a time (an ASGI server would
    otherwise read a synchronous iterator whole before sending it)."""
    read = sync_to_async(_next_batch, thread_sensitive=True)
    while batch := await read(pieces):
        yield batch


@login_required
@require_GET
def export_all(request: HttpRequest) -> StreamingHttpResponse | HttpResponse:
    """Every conversation of the person as one JSON file, streamed as it is read."""
    if not services.may_chat(request.user):
        return HttpResponse("Your account may not use chats.", status=403)
    filename = f"chats-{slugify(request.user.get_username()) or 'export'}.json"
    return StreamingHttpResponse(
        _in_batches(exports.stream_all(request.user)),
        content_type="application/json",
        headers={"Content-Disposition": content_disposition_header(True, filename)},
    )
