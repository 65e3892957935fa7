"""Conversations as files: one as Markdown or JSON, all of a person's as one JSON stream.

The JSON of a conversation holds its model, parameters, timestamps and every message in
order with its token counts; the export of all conversations is the same objects in a list,
written while the rows are read (server-side cursors), so memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.utils import timezone

from conversations import parameters
from conversations.models import Conversation, Message

FORMAT_VERSION = 1
CHUNK_ROWS = 1000


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_dict(message: Message) -> dict[str, Any]:
    """A message as exported."""
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "model": message.model,
        "created_at": _when(message.created_at),
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "usage_source": message.usage_source,
    }


def conversation_dict(conversation: Conversation, messages: Iterable[Message]) -> dict[str, Any]:
    """A conversation and its `messages` (in order) as exported."""
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "settings": parameters.values(conversation),
        "pinned": conversation.pinned,
        "created_at": _when(conversation.created_at),
        "last_message_at": _when(conversation.last_message_at),
        "messages": [message_dict(message) for message in messages],
    }


def as_json(conversation: Conversation) -> str:
    """One conversation as a JSON document."""
    document = conversation_dict(conversation, conversation.messages.order_by("pk"))
    return json.dumps({"version": FORMAT_VERSION, **document}, ensure_ascii=False, indent=2)


def as_markdown(conversation: Conversation) -> str:
    """One conversation as Markdown: a heading, its settings, then each message."""
    lines = [f"# {conversation.title}", ""]
    lines.append(f"- Model: {conversation.model or 'none'}")
    lines.append(f"- Created: {_when(conversation.created_at)}")
    for name, value in parameters.values(conversation).items():
        if value is not None:
            lines.append(f"- {name}: {value}")
    if conversation.system_prompt:
        lines += ["", "## System prompt", "", conversation.system_prompt]
    for message in conversation.messages.order_by("pk").iterator(chunk_size=CHUNK_ROWS):
        lines += ["", _message_heading(message), "", message.content or f"*{message.error}*"]
    return "\n".join(lines) + "\n"


def _message_heading(message: Message) -> str:
    heading = f"## {message.get_role_display()}"
    if message.is_assistant and message.model:
        heading += f" ({message.model})"
    tokens = [t for t in (message.prompt_tokens, message.completion_tokens) if t is not None]
    if message.is_assistant and tokens:
        heading += f" · {message.prompt_tokens or 0} + {message.completion_tokens or 0} tokens"
    return heading + f" · {_when(message.created_at)}"


def stream_all(owner: object) -> Iterator[str]:
    """Every conversation of `owner` that has messages, as one JSON document, in pieces."""
    conversations = (
        Conversation.objects.filter(owner=owner, last_message_at__isnull=False)
        .order_by("pk")
        .iterator(chunk_size=CHUNK_ROWS)
    )
    messages = (
        Message.objects.filter(
            conversation__owner=owner, conversation__last_message_at__isnull=False
        )
        .order_by("conversation_id", "pk")
        .iterator(chunk_size=CHUNK_ROWS)
    )
    yield (
        f'{{"version": {FORMAT_VERSION}, "exported_at": "{timezone.now().isoformat()}", '
        '"conversations": ['
    )
    pending = next(messages, None)
    for index, conversation in enumerate(conversations):
        own: list[Message] = []
        # Both are in conversation order: take this conversation's messages off the stream.
        while pending is not None and pending.conversation_id <= conversation.pk:
            if pending.conversation_id == conversation.pk:
                own.append(pending)
            pending = next(messages, None)
        separator = ",\n" if index else "\n"
        yield separator + json.dumps(conversation_dict(conversation, own), ensure_ascii=False)
    yield "\n]}\n"
