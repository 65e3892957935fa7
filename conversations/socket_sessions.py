"""Who may use a chat socket, checked again with every frame from the page.

A socket belongs to the session it was opened with. For every frame, in the same database
call that serves it, the session must still exist and be signed in as the conversation's
owner, the owner's password (session auth hash) must be the one the socket started with,
and the owner must still be allowed to chat. A turn is authorized, validated and begun in
one such call (`begin`). Opening a socket takes one call too (`open_socket`): the auth
middleware has just checked the session, so it checks ownership and reads the latest turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.utils.crypto import constant_time_compare

from accounts.models import User
from conversations import attachments, capabilities, services
from conversations.forms import MessageForm
from conversations.models import Conversation, Message
from usage import limits


@dataclass
class SocketSession:
    """Who a socket was opened by: the owner, their session, their password's auth hash."""

    user_id: int
    session_key: str
    auth_hash: str


@dataclass
class Refusal:
    """A turn that may not begin: what to tell the page, and the text to put back."""

    error: str
    text: str
    conversation: Conversation


def authorize(session: SocketSession, conversation_id: int) -> Conversation | None:
    """The conversation if the socket's session still stands and its owner may use it.

    The session must still exist (not signed out, not expired) and be signed in as the
    owner, and the owner's password must be the one the socket was opened with (the same
    test Django applies to the session's requests, by the session auth hash).
    """
    conversation = services.find_conversation_for_user(session.user_id, conversation_id)
    if conversation is None or not _session_stands(session, conversation.owner):
        return None
    return conversation


def open_socket(user_id: int, conversation_id: int) -> list[Message] | None:
    """The conversation's latest turn, for a socket its owner is opening; None when it is
    not theirs.

    Neither the session nor the owner is read again: the auth middleware has just loaded
    the user from the session, with the same session auth hash test, and the consumer has
    checked that they may chat.
    """
    if not Conversation.objects.filter(pk=conversation_id, owner_id=user_id).exists():
        return None
    return services.latest_turn(conversation_id)


def begin(
    session: SocketSession, conversation_id: int, action: str, content: dict, models: list[str]
) -> services.Turn | Refusal | None:
    """Authorize, validate and begin a turn, in one trip to the database thread.

    None when the socket's session may no longer use the conversation.
    """
    conversation = authorize(session, conversation_id)
    if conversation is None:
        return None
    data = {
        "content": content.get("content", ""),
        "model": content.get("model") or conversation.model,
    }
    form = MessageForm(
        data,
        models=models,
        may_use=limits.effective_limits(conversation.owner).allows,
        content_required=action != "regenerate",
    )
    if not form.is_valid():
        return Refusal(form.summary(), data["content"], conversation)
    text, model = form.cleaned_data["content"], form.cleaned_data["model"]
    try:
        if action == "send":
            images = attachments.requested_ids(content.get("attachments"))
            if images and not capabilities.sees_images(model):
                return Refusal(attachments.vision_refusal(model), text, conversation)
            return services.begin_turn(conversation, text, model, images)
        if action == "edit":
            message_id = _id_or_zero(content.get("message_id"))
            return services.begin_edit(conversation, message_id, text, model)
        return services.begin_regeneration(conversation, model)
    except (services.Busy, services.NotAllowed, attachments.Refused) as exc:
        return Refusal(exc.message, text, conversation)


def _session_stands(session: SocketSession, owner: User) -> bool:
    data = _session_store()(session.session_key).load()
    return str(data.get(SESSION_KEY, "")) == str(owner.pk) and constant_time_compare(
        owner.get_session_auth_hash(), session.auth_hash
    )


def _session_store() -> type[SessionBase]:
    """The SessionStore of SESSION_ENGINE (imported once by Python; looked up each time, so
    that a changed setting applies)."""
    return import_module(settings.SESSION_ENGINE).SessionStore


def _id_or_zero(value: object) -> int:
    """A message id sent by the page; 0 (no such message) when it is not a number."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
