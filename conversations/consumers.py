"""The chat websocket: authorizes, validates, saves and hands work to the runner.

It never streams itself. On connect (and whenever it notices a gap in a reply's sequence
numbers) it sends the latest turn from the snapshot or the database, then forwards only
updates newer than what it sent. A reply it shows as streaming that goes quiet for QUIET
seconds is checked against its snapshot, so a lost frame, even the final one, is
recovered without waiting for another.

Who may use it: a socket belongs to the session it was opened with. Every frame from the page
is authorized again, in the same database call that serves it: the session must still exist
and be signed in as the conversation's owner, the owner's password (session auth hash) must
be the one the socket started with, and the owner must still be allowed to chat. Otherwise,
and as soon as `accounts.signals` pushes a sign-out or an access change to the owner's
account group, the socket is closed with FORBIDDEN (4403), which the page reads as "reload"
and htmx does not retry.

Frames it cannot use get a clear error under the composer and the socket stays open: text
that is not JSON or is nested too deep to decode, text with an unpaired surrogate (valid
JSON, but no UTF-8 exists for it: the database and the socket would fail on it later), and
binary frames. (Daphne lets an application close only with 1000 or 3000-4999, so 1003 and
1007 are not ours to send. A text frame that is not UTF-8 never reaches the consumer: Daphne
drops that connection itself, and the browser reports 1006 and reconnects.)

Redis down: the meter cannot admit a turn, so the reply is saved as an error with Retry and
shown on this socket directly (not through the channel layer, which is on the same Redis).
The socket stays open: the channel layer subscribes again by itself about a second after
Redis is back. Meanwhile, and for frames published before that, the quiet-reply check stands
in: every reply this socket starts is watched from the start, and without a snapshot the
database says when it ended. A socket that opens while the channel layer is unreachable is
refused at the handshake, which htmx retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import Any

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.utils.crypto import constant_time_compare

from accounts.models import User
from accounts.signals import account_group, session_tag
from conversations import fragments, recovery, runner, services, snapshots
from conversations.forms import MessageForm
from conversations.models import Conversation, Message
from llm import catalog
from llm.tokens import estimate_prompt_tokens
from usage.services import Refused, admit

log = logging.getLogger(__name__)

FORBIDDEN = 4403
QUIET = 2.0

# What a Redis that cannot be reached raises through redis-py.
REDIS_DOWN = (redis.RedisError, OSError)

METER_UNREACHABLE = (
    "The reply could not start: the usage meter cannot be reached right now. Try again in a moment."
)
STOP_UNREACHABLE = (
    "The reply could not be stopped: the server cannot reach its message store right now. "
    "Try again in a moment."
)
UNREADABLE = "That message could not be read. Reload the page and try again."
NOT_TEXT = "That message could not be read: the chat takes text messages only."
BROKEN_CHARACTER = (
    "Your message contains a broken character (shown as \ufffd). Remove it and send again."
)

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class _Unreadable:
    """A frame the consumer cannot act on: what to tell the page, and text to put back."""

    error: str
    text: str = ""


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation_id: int
    group: str

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            return _Unreadable(UNREADABLE)
        if _has_lone_surrogate(content):
            # A new message goes back in the box, readable; an edit stays in its own form.
            sent = isinstance(content, dict) and content.get("action") == "send"
            text = content.get("content") if sent else None
            restore = _SURROGATE.sub("\ufffd", text) if isinstance(text, str) else ""
            return _Unreadable(BROKEN_CHARACTER, restore)
        return content

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_seq: dict[int, int] = {}
        # Replies this socket shows as streaming: when their last frame came (loop time).
        self.streaming: dict[int, float] = {}
        self.watcher: asyncio.Task[None] | None = None
        # Handlers run one at a time; the watcher takes this too, so that what it sends
        # never interleaves with a frame.
        self.lock = asyncio.Lock()
        self.answered = False  # the handshake was accepted or refused
        self.session_key = ""
        self.auth_hash = ""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except REDIS_DOWN as exc:
            if self.answered:
                raise
            # The channel layer is unreachable before the socket opened: refuse the
            # handshake (the browser sees 1006 and htmx tries again later).
            log.warning("chat socket refused: the channel layer is unreachable: %s", exc)
            await send({"type": "websocket.close"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        async with self.lock:
            # Update frames touch no database: skip Channels' close_old_connections, a
            # thread hop per frame per socket. Everything else goes the usual way.
            if message["type"] == "reply.frame":
                await self.reply_frame(message)
            else:
                await super().dispatch(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        if services.may_chat(user):
            self.session_key = getattr(self.scope.get("session"), "session_key", None) or ""
            self.auth_hash = user.get_session_auth_hash()
        if not self.session_key or await self._conversation() is None:
            await self._refuse()
            return
        self.group = runner.group(self.conversation_id)
        self.account_group = account_group(user.pk)
        # Join first, then read the state: nothing published after the read is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.account_group, self.channel_name)
        await self.accept()
        self.answered = True
        await self._send_latest_turn()

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        for name in (getattr(self, "group", None), getattr(self, "account_group", None)):
            if name:
                try:
                    await self.channel_layer.group_discard(name, self.channel_name)
                except REDIS_DOWN as exc:
                    log.warning("could not leave group %s: %s", name, exc)

    async def _refuse(self) -> None:
        """Close with FORBIDDEN: before the handshake, this refuses it."""
        self.answered = True
        await self.close(code=FORBIDDEN)

    # -- from the page --------------------------------------------------------------

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            content: Any = _Unreadable(NOT_TEXT)
        else:
            content = await self.decode_json(text_data)
        await self.receive_json(content, **kwargs)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Frames carry no CSRF token: every one is authorized again (for a turn, in the
        # same database call that begins it).
        action = content.get("action") if isinstance(content, dict) else None
        if action in {"send", "edit", "regenerate"}:
            await self._turn(action, content)
            return
        conversation = await self._conversation()
        if conversation is None:
            await self._refuse()
            return
        if isinstance(content, _Unreadable):
            await self._composer_error(content.error, content.text, conversation, "send")
        elif action == "stop":
            await self._stop(conversation)

    async def _turn(self, action: str, content: dict) -> None:
        models = await _model_names()
        user = self.scope.get("user")
        result = await database_sync_to_async(_begin)(
            self._socket_session(user.pk), self.conversation_id, action, content, models
        )
        if result is None:
            await self._refuse()
            return
        if isinstance(result, _Refusal):
            await self._composer_error(result.error, result.text, result.conversation, action)
            return
        admission, refused = None, None
        try:
            admission = await admit(
                user, door="web", prompt_tokens=estimate_prompt_tokens(result.messages)
            )
        except Refused as exc:
            if exc.kind == "unavailable":
                await self._show_unmetered(result)
                return
            refused = exc  # the runner shows it in place of the reply, with Retry
        except Exception as exc:
            log.warning("the usage meter failed for conversation %s: %r", self.conversation_id, exc)
            await self._show_unmetered(result)
            return
        runner.start(result, admission, refused)
        # Watched from the start: if even its first frame is lost (the channel layer was
        # subscribing again after a Redis restart), the snapshot brings the page up to date.
        self._watch(result.reply.pk)

    async def _show_unmetered(self, turn: services.Turn) -> None:
        """The meter cannot be reached (Redis is down): save the reply as an error with
        Retry, and show the turn on this socket itself, since the channel layer and the
        runner's snapshots live in that Redis too."""
        reply = await database_sync_to_async(services.finish_reply)(
            turn.reply, content="", status=Message.Status.ERROR, error=METER_UNREACHABLE
        )
        items = [fragments.message_item(reply)]
        if turn.user_message is not None:
            items.insert(0, fragments.message_item(turn.user_message))
        await self.send(
            text_data=fragments.messages_frame(items, turn.conversation, removed=turn.removed)
        )

    async def _stop(self, conversation: Conversation) -> None:
        reply = await database_sync_to_async(_streaming_reply)(conversation.pk)
        if reply is None:
            return
        try:
            await runner.request_stop(conversation.pk)
            if not await snapshots.is_alive_async(reply.pk):
                # Its runner is gone (the worker died): settle it now, and tell every tab.
                await recovery.recover_dead(reply.pk)
        except REDIS_DOWN as exc:
            log.warning("could not stop reply %s: %s", reply.pk, exc)
            await self._composer_error(STOP_UNREACHABLE, "", conversation, "stop")

    async def _composer_error(
        self, error: str, text: str, conversation: Conversation, action: str
    ) -> None:
        restore = text if action == "send" else ""
        await self.send(
            text_data=fragments.composer_error_frame(
                error, content=restore, conversation=conversation
            )
        )

    # -- from the account -----------------------------------------------------------

    async def session_ended(self, event: dict[str, Any]) -> None:
        """A session of this socket's owner signed out: close if it is this socket's."""
        if constant_time_compare(event.get("session", ""), session_tag(self.session_key)):
            await self._refuse()

    async def account_changed(self, event: dict[str, Any]) -> None:
        """The owner's password, activity or role changed: close unless still allowed."""
        if await self._conversation() is None:
            await self._refuse()

    # -- from the runner ------------------------------------------------------------

    async def reply_frame(self, event: dict[str, Any]) -> None:
        message_id, seq = event["message"], event["seq"]
        last = self.last_seq.get(message_id, -1)
        if seq <= last:
            return  # already part of what this socket was sent
        if (seq > last + 1 and last >= 0) or (seq > 0 and last < 0):
            # A gap (the channel layer dropped a message, or we joined mid-reply without a
            # snapshot): send the whole turn again from the snapshot.
            await self._send_latest_turn()
            if self.last_seq.get(message_id, -1) >= seq:
                return
        self.last_seq[message_id] = seq
        if event.get("final"):
            self.streaming.pop(message_id, None)
        else:
            self._watch(message_id)
        await self.send(text_data=event["html"])

    async def _check_quiet_reply(self, message_id: int) -> None:
        """A streaming reply went quiet: re-sync if its snapshot is ahead of this socket or
        done; without a snapshot (Redis restarted or unreachable), once the database says
        it ended."""
        if message_id not in self.streaming:
            return
        snapshot = await self._snapshot(message_id)
        if snapshot is None:
            if await database_sync_to_async(_is_streaming)(message_id):
                return  # watched until it ends (or the sweeper settles it)
        elif snapshot.is_streaming and snapshot.seq <= self.last_seq.get(message_id, -1):
            return
        self.streaming.pop(message_id, None)
        await self._send_latest_turn()

    async def _snapshot(self, message_id: int) -> snapshots.Snapshot | None:
        """The reply's snapshot; None when there is none or Redis cannot be reached."""
        try:
            return await snapshots.read(message_id)
        except REDIS_DOWN as exc:
            log.warning("reply %s: no snapshot, Redis is unreachable: %s", message_id, exc)
            return None

    def _watch(self, message_id: int) -> None:
        self.streaming[message_id] = asyncio.get_running_loop().time()
        if self.watcher is None and getattr(self, "channel_name", None):
            self.watcher = asyncio.get_running_loop().create_task(self._watch_quiet_replies())

    async def _watch_quiet_replies(self) -> None:
        """While replies stream: check the quiet ones, in turn with the frames."""
        loop = asyncio.get_running_loop()
        try:
            while self.streaming:
                await asyncio.sleep(QUIET / 2)
                now = loop.time()
                quiet = [m for m, seen in self.streaming.items() if now - seen >= QUIET]
                for message_id in quiet:
                    async with self.lock:
                        if message_id in self.streaming:
                            self.streaming[message_id] = now
                        try:
                            await self._check_quiet_reply(message_id)
                        except Exception:
                            log.warning("could not check reply %s", message_id, exc_info=True)
        finally:
            self.watcher = None

    async def conversation_title(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])

    async def turn_refresh(self, event: dict[str, Any]) -> None:
        await self._send_latest_turn()

    # -- helpers --------------------------------------------------------------------

    def _socket_session(self, user_id: int) -> _SocketSession:
        return _SocketSession(user_id, self.session_key, self.auth_hash)

    async def _conversation(self) -> Conversation | None:
        """The conversation, if this socket's session may still use it (see `_authorize`)."""
        user = self.scope.get("user")
        return await database_sync_to_async(_authorize)(
            self._socket_session(user.pk), self.conversation_id
        )

    async def _send_latest_turn(self) -> None:
        turn = await database_sync_to_async(_latest_turn)(self.conversation_id)
        if not turn:
            return
        items = []
        for message in turn:
            text = None
            if message.is_streaming:
                snapshot = await self._snapshot(message.pk)
                if snapshot is None:
                    # Its checkpoint stands in, watched until the database says it ended.
                    self._watch(message.pk)
                elif snapshot.is_streaming:
                    text = snapshot.text
                    self.last_seq[message.pk] = snapshot.seq
                    self._watch(message.pk)
                else:
                    # Finished between our two reads: the database has the final reply.
                    message = await database_sync_to_async(Message.objects.get)(pk=message.pk)
                    self.last_seq[message.pk] = snapshot.seq
            items.append(fragments.message_item(message, text))
        await self.send(text_data=fragments.messages_frame(items))


@dataclass
class _SocketSession:
    """Who a socket was opened by: the owner, their session, their password's auth hash."""

    user_id: int
    session_key: str
    auth_hash: str


def _authorize(session: _SocketSession, conversation_id: int) -> Conversation | None:
    """The conversation if the socket's session still stands and its owner may use it.

    The session must still exist (not signed out, not expired) and be signed in as the
    owner, and the owner's password must be the one the socket was opened with (the same
    test Django applies to the session's requests, by the session auth hash).
    """
    conversation = services.find_conversation_for_user(session.user_id, conversation_id)
    if conversation is None or not _session_stands(session, conversation.owner):
        return None
    return conversation


def _session_stands(session: _SocketSession, owner: User) -> bool:
    data = _session_store()(session.session_key).load()
    return str(data.get(SESSION_KEY, "")) == str(owner.pk) and constant_time_compare(
        owner.get_session_auth_hash(), session.auth_hash
    )


@cache
def _session_store() -> type[SessionBase]:
    return import_module(settings.SESSION_ENGINE).SessionStore


@dataclass
class _Refusal:
    error: str
    text: str
    conversation: Conversation


def _begin(
    session: _SocketSession, conversation_id: int, action: str, content: dict, models: list[str]
) -> services.Turn | _Refusal | None:
    """Authorize, validate and begin a turn, in one trip to the database thread.

    None when the socket's session may no longer use the conversation.
    """
    conversation = _authorize(session, conversation_id)
    if conversation is None:
        return None
    data = {
        "content": content.get("content", ""),
        "model": content.get("model") or conversation.model,
    }
    form = MessageForm(data, models=models, content_required=action != "regenerate")
    if not form.is_valid():
        return _Refusal(form.summary(), data["content"], conversation)
    text, model = form.cleaned_data["content"], form.cleaned_data["model"]
    try:
        if action == "send":
            return services.begin_turn(conversation, text, model)
        if action == "edit":
            return services.begin_edit(conversation, _int(content.get("message_id")), text, model)
        return services.begin_regeneration(conversation, model)
    except (services.Busy, services.NotAllowed) as exc:
        return _Refusal(exc.message, text, conversation)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0


def _latest_turn(conversation_id: int) -> list[Message]:
    conversation = Conversation.objects.get(pk=conversation_id)
    return services.latest_turn(conversation)


def _is_streaming(message_id: int) -> bool:
    return Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).exists()


def _has_lone_surrogate(value: Any) -> bool:
    """Whether decoded JSON holds a string with an unpaired surrogate (JSON's "\\ud800")."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _streaming_reply(conversation_id: int) -> Message | None:
    return Message.objects.filter(
        conversation_id=conversation_id, status=Message.Status.STREAMING
    ).first()


async def _model_names() -> list[str]:
    try:
        return [model.name for model in await catalog.list_models()]
    except Exception:
        log.exception("the model catalog is unavailable")
        return []
