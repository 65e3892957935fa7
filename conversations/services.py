"""Operations on conversations that views, the consumer and the runner share."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.http import Http404
from django.utils import timezone

from conversations import attachments, capabilities
from conversations.markdown import render_markdown
from conversations.models import Conversation, Message
from conversations.reasoning import split_transcript
from llm.tokens import estimate_prompt_tokens, estimate_tokens
from usage.services import record_interrupted

TITLE_WORDS = 6
INTERRUPTED_MESSAGE = "The server stopped while this reply was being written."


class Busy(Exception):
    """A reply is still streaming in this conversation."""

    message = "A reply is still being written. Stop it or wait for it to finish."


class NotAllowed(Exception):
    """The action does not apply to this conversation's current state."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def may_chat(user: object) -> bool:
    """Signed in, active and approved."""
    return bool(
        getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and not getattr(user, "is_pending", True)
    )


def get_conversation_for_user(user: object, pk: int | str) -> Conversation:
    """The user's conversation `pk`, or Http404 (also for anyone else's)."""
    if not may_chat(user):
        raise Http404("No such conversation")
    try:
        return Conversation.objects.get(pk=int(pk), owner=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise Http404("No such conversation") from None


def find_conversation_for_user(user_id: int, pk: int) -> Conversation | None:
    """The conversation if its owner is `user_id` and may still chat; None otherwise."""
    conversation = (
        Conversation.objects.select_related("owner").filter(pk=pk, owner_id=user_id).first()
    )
    if conversation is None or not may_chat(conversation.owner):
        return None
    return conversation


def draft_for(user: object) -> Conversation:
    """The user's empty conversation, created when there is none (at most one is kept)."""
    draft = Conversation.objects.filter(owner=user, last_message_at__isnull=True).first()
    if draft is None:
        last = Conversation.objects.filter(owner=user).exclude(model="").order_by("-pk").first()
        draft = Conversation.objects.create(owner=user, model=last.model if last else "")
    return draft


def fallback_title(text: str) -> str:
    """The first words of a message, as a title."""
    words = text.split()
    title = " ".join(words[:TITLE_WORDS])
    if len(words) > TITLE_WORDS:
        title += "…"
    return title[:200] or Conversation.DEFAULT_TITLE


def clean_title(text: str) -> str:
    """A model's title suggestion, reduced to one short plain line ("" if unusable)."""
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = re.sub(r"^(title\s*:\s*)", "", line.strip(), flags=re.IGNORECASE)
    line = re.sub(r"[*_`#]+", "", line).strip().strip("\"'").strip()
    return line[:80]


def latest_turn(conversation_id: int) -> list[Message]:
    """The last user message and the reply after it (what a socket re-syncs on connect)."""
    last_two = list(Message.objects.filter(conversation_id=conversation_id).order_by("-pk")[:2])
    last_two.reverse()
    if len(last_two) == 2 and last_two[0].role != Message.Role.USER:
        return last_two[1:]
    return last_two


def history_for(conversation: Conversation, before: Message) -> list[dict[str, str]]:
    """The messages the model sees for the reply `before`, system prompt first."""
    earlier = conversation.messages.filter(pk__lt=before.pk)
    return history_of(conversation, earlier, before.model)


def history_of(
    conversation: Conversation, earlier: Iterable[Message], model: str
) -> list[dict[str, str]]:
    """What `model` is sent of the `earlier` messages, in order, system prompt first."""
    messages: list[dict[str, str]] = []
    if conversation.system_prompt.strip():
        messages.append({"role": "system", "content": conversation.system_prompt})
    sees_images = capabilities.sight(model)  # a model that cannot gets the text only
    for message in earlier:
        if not message.content:
            continue
        if message.role == Message.Role.ASSISTANT and message.status == Message.Status.ERROR:
            continue
        upstream: dict = message.as_upstream()
        if message.images and sees_images():
            upstream["images"] = attachments.encoded(message)
        messages.append(upstream)
    return messages


@dataclass
class Turn:
    """A reply about to be generated: the row it fills and what the model is sent."""

    conversation: Conversation
    user_message: Message | None
    reply: Message
    messages: list[dict[str, str]]
    first_exchange: bool
    removed: tuple[int, ...] = ()  # messages this turn replaces: every tab drops them


def _empty_reply(conversation: Conversation, model: str) -> Message:
    """A reply of `model` about to stream, not saved yet."""
    return Message(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )


def _start_reply(conversation: Conversation, model: str) -> Message:
    reply = _empty_reply(conversation, model)
    reply.save()
    return reply


def _ensure_idle(conversation: Conversation) -> None:
    if conversation.messages.filter(status=Message.Status.STREAMING).exists():
        raise Busy


@transaction.atomic
def begin_turn(
    conversation: Conversation, content: str, model: str, images: list | None = None
) -> Turn:
    """Save the user's message (claiming its pending `images`, attachment ids) and an empty
    streaming reply."""
    # One read serves the busy check and the history; one INSERT writes both messages.
    earlier = list(conversation.messages.all())
    if any(message.status == Message.Status.STREAMING for message in earlier):
        raise Busy
    first = conversation.is_draft
    user_message, reply = Message.objects.bulk_create(
        [
            Message(conversation=conversation, role=Message.Role.USER, content=content),
            _empty_reply(conversation, model),
        ]
    )
    attachments.attach(user_message, images or [])
    conversation.model = model
    conversation.last_message_at = timezone.now()
    fields = ["model", "last_message_at"]
    if first:
        conversation.title = fallback_title(content)
        fields.append("title")
    conversation.save(update_fields=fields)
    history = history_of(conversation, [*earlier, user_message], model)
    return Turn(conversation, user_message, reply, history, first)


@transaction.atomic
def begin_regeneration(conversation: Conversation, model: str) -> Turn:
    """Replace the last reply (or answer a last user message that has none)."""
    _ensure_idle(conversation)
    last = conversation.messages.order_by("-pk").first()
    removed: tuple[int, ...] = ()
    if last is not None and last.role == Message.Role.ASSISTANT:
        removed = (last.pk,)
        last.delete()
        last = conversation.messages.order_by("-pk").first()
    if last is None or last.role != Message.Role.USER:
        raise NotAllowed("There is no message to answer.")
    if model != conversation.model:
        conversation.model = model
        conversation.save(update_fields=["model"])
    reply = _start_reply(conversation, model)
    # The title came from the first exchange already (or from the person): keep it.
    return Turn(conversation, last, reply, history_for(conversation, reply), False, removed)


@transaction.atomic
def begin_edit(conversation: Conversation, message_id: int, content: str, model: str) -> Turn:
    """Change the last user message, drop what followed it, and answer it again."""
    _ensure_idle(conversation)
    last_user = conversation.messages.filter(role=Message.Role.USER).order_by("-pk").first()
    if last_user is None or last_user.pk != message_id:
        raise NotAllowed("Only your last message can be edited.")
    following = conversation.messages.filter(pk__gt=last_user.pk)
    removed = tuple(following.values_list("pk", flat=True))
    following.delete()
    last_user.content = content
    last_user.save(update_fields=["content"])
    conversation.model = model
    conversation.last_message_at = timezone.now()
    conversation.save(update_fields=["model", "last_message_at"])
    reply = _start_reply(conversation, model)
    return Turn(conversation, last_user, reply, history_for(conversation, reply), False, removed)


def finish_reply(
    reply: Message,
    *,
    content: str,
    status: str,
    error: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    eval_duration_ns: int | None = None,
    usage_source: str = "",
    html: str | None = None,
    thinking: str | None = None,
    thinking_ms: int | None = None,
) -> Message:
    """Save a reply's final text, status and metrics, with its HTML rendered once.

    `html`, when given, is `content` already rendered (by the streaming renderer).
    `thinking` (None: keep the reply's) is the model's reasoning, `thinking_ms` its time.
    """
    reply.content = content
    reply.status = status
    reply.error = error
    reply.prompt_tokens = prompt_tokens
    reply.completion_tokens = completion_tokens
    reply.eval_duration_ns = eval_duration_ns
    reply.usage_source = usage_source
    reply.checkpointed_at = timezone.now()
    reply.html = render_markdown(content) if html is None else html
    if thinking is not None:
        reply.thinking, reply.thinking_ms = thinking, thinking_ms
    # An update, not save(): if the conversation was deleted meanwhile, nothing comes back.
    fields = ["content", "status", "error", "prompt_tokens", "completion_tokens"]
    fields += ["eval_duration_ns", "usage_source", "checkpointed_at", "html"]
    fields += ["thinking", "thinking_ms"]
    Message.objects.filter(pk=reply.pk).update(**{name: getattr(reply, name) for name in fields})
    return reply


@transaction.atomic
def checkpoint_many(texts: list[tuple[int, str]]) -> None:
    """Save streaming replies' text so far (each worker does this about once a second).

    One UPDATE for all of them (in chunks within the database's parameter limit), written
    as SQL: the ORM's per-row query building cost more than the writes at 150 replies a
    second, and a statement per reply gave the interpreter's lock away once per reply, each
    time waiting for the busy event loop to give it back (bench/README.md).
    """
    if not texts:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    limit = connection.features.max_query_params or 999
    chunk = max(1, (limit - 2) // 3)  # three parameters per reply, two for all
    with connection.cursor() as cursor:
        for i in range(0, len(texts), chunk):
            part = texts[i : i + chunk]
            cursor.execute(_checkpoint_sql(len(part)), _checkpoint_params(part, now))


def _checkpoint_sql(count: int) -> str:
    """The UPDATE that saves `count` streaming replies' text (see `_checkpoint_params`)."""
    qn = connection.ops.quote_name
    meta = Message._meta
    pk, status = qn(meta.pk.column), qn(meta.get_field("status").column)
    whens = " ".join(["WHEN %s THEN %s"] * count)
    return (
        f"UPDATE {qn(meta.db_table)} SET {qn(meta.get_field('content').column)} = "
        f"CASE {pk} {whens} END, {qn(meta.get_field('checkpointed_at').column)} = %s "
        f"WHERE {pk} IN ({', '.join(['%s'] * count)}) AND {status} = %s"
    )


def _checkpoint_params(texts: list[tuple[int, str]], now: object) -> list[object]:
    pairs = [value for reply_id, content in texts for value in (reply_id, content)]
    return [*pairs, now, *(reply_id for reply_id, _ in texts), Message.Status.STREAMING]


def interrupt_reply(reply: Message, text: str | None = None) -> Message | None:
    """Mark a reply whose runner is gone as interrupted, keeping the best text known, and
    charge what it is estimated to have cost.

    None when the reply was no longer streaming: another worker (or its runner) settled it.
    `text` is the reply's snapshot: its thinking, then its answer (`reasoning`).
    """
    thinking = None
    if text is not None:
        thinking, text, _ = split_transcript(text)
    content = text if text is not None and len(text) >= len(reply.content) else reply.content
    claimed = Message.objects.filter(pk=reply.pk, status=Message.Status.STREAMING).update(
        status=Message.Status.INTERRUPTED
    )
    if not claimed:
        return None
    finished = finish_reply(
        reply,
        content=content,
        status=Message.Status.INTERRUPTED,
        error=INTERRUPTED_MESSAGE,
        completion_tokens=None,
        thinking=thinking or None,
    )
    record_interrupted(
        reply.conversation.owner_id,
        model=reply.model,
        prompt_tokens=estimate_prompt_tokens(history_for(reply.conversation, reply)),
        completion_tokens=estimate_tokens(content),
        started_at=reply.created_at,
    )
    return finished


def rename(conversation: Conversation, title: str) -> None:
    conversation.title = title.strip()[:200] or Conversation.DEFAULT_TITLE
    conversation.save(update_fields=["title"])


def toggle_pin(conversation: Conversation) -> None:
    conversation.pinned = not conversation.pinned
    conversation.save(update_fields=["pinned"])
