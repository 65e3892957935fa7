"""HTML for pages and websocket frames, always from the partial templates."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from conversations import reasoning
from conversations.markdown import StreamingRenderer, render_markdown
from conversations.models import Conversation, Message


def message_item(message: Message, text: str | None = None) -> dict[str, Any]:
    """Template context for one message; `text` overrides a streaming reply's saved text."""
    item: dict[str, Any] = {"m": message, "done": "", "tail": "", "html": ""}
    if message.role != Message.Role.ASSISTANT:
        return item
    item |= {"thinking": message.thinking, "thinking_open": False}
    if message.status == Message.Status.STREAMING:
        if text is not None:  # a snapshot's transcript: thinking, then the answer
            item["thinking"], text, started = reasoning.split_transcript(text)
            item["thinking_open"] = not started
        renderer = StreamingRenderer(message.content if text is None else text)
        item["done"] = mark_safe(renderer.done_html)
        item["tail"] = mark_safe(renderer.tail_html)
    else:
        item["html"] = (
            mark_safe(message.html)
            if message.html or not message.content
            else render_markdown(message.content)
        )
    return item


def messages_frame(
    items: list[dict[str, Any]],
    conversation: Conversation | None = None,
    removed: tuple[int, ...] = (),
) -> str:
    """Whole messages (and the sidebar entry), swapped in place or appended when new;
    `removed` messages are taken off the page."""
    context: dict[str, Any] = {"items": items, "removed": removed}
    if conversation is not None:
        context |= {"c": conversation, "current_id": conversation.pk}
    return render_to_string("conversations/frames.html#messages", context)


def update_frame(reply_id: int, appended: str, tail: str) -> str:
    """Finished blocks to append and the open tail block to replace.

    Sent several times a second per streaming reply, so the partial is rendered once (per
    process, with and without blocks to append) around placeholders and filled by joining
    strings. `appended` and `tail` must be sanitized HTML (`conversations.markdown`).
    """
    pieces = _update_pieces(bool(appended))
    if appended:
        a, b, c, d, e = pieces
        return "".join((a, str(reply_id), b, appended, c, str(reply_id), d, tail, e))
    a, b, c = pieces
    return "".join((a, str(reply_id), b, tail, c))


_ID, _APPENDED, _TAIL = "REPLYIDSLOT", "APPENDEDSLOT", "TAILSLOT"


@cache
def _update_pieces(with_appended: bool) -> tuple[str, ...]:
    """The update partial cut at its slots: reply id, [appended, reply id,] tail."""
    html = render_to_string(
        "conversations/frames.html#update",
        {
            "reply_id": _ID,
            "appended": mark_safe(_APPENDED) if with_appended else "",
            "tail": mark_safe(_TAIL),
        },
    )
    slots = [_ID, _APPENDED, _ID, _TAIL] if with_appended else [_ID, _TAIL]
    pieces = []
    for slot in slots:
        before, found, html = html.partition(slot)
        if not found:
            raise ValueError(f"frames.html#update must use each slot once, in order: {slot}")
        pieces.append(before)
    return (*pieces, html)


def title_frame(conversation: Conversation) -> str:
    """The new title, in the sidebar and the heading."""
    return render_to_string(
        "conversations/frames.html#title",
        {"c": conversation, "current_id": conversation.pk, "conversation": conversation},
    )


def composer_error_frame(
    error: str, *, content: str = "", conversation: Conversation | None = None
) -> str:
    """An error under the composer; the unsent text is put back when given."""
    return render_to_string(
        "conversations/frames.html#composer_error",
        {
            "error": error,
            "restore": bool(content),
            "content": content,
            "conversation": conversation,
            "models": True,
        },
    )
