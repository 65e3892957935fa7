"""The chat websocket: authorizes, validates, saves and hands work to the runner.

It never streams itself. On connect, and on a gap in a reply's sequence numbers, it sends
the latest turn from the snapshot or the database, then forwards only newer updates; a
streaming reply that goes quiet for QUIET seconds is checked against its snapshot, so a lost
frame, even the final one, is recovered.

Every frame is authorized again (`socket_sessions`); a socket whose session no longer stands
is closed with FORBIDDEN (4403), which the page reads as "reload". Frames it cannot use get
an error under the composer (`socket_frames`). When Redis is down the meter cannot admit a
turn: the reply is saved as an error with Retry and shown on this socket directly, since
the channel layer is on that Redis too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils.crypto import constant_time_compare

from accounts.signals import account_group, session_tag
from chatsite import channels_adapter
from chatsite.websocket import CLIENT_GONE
from conversations import fragments, recovery, runner, services, snapshots, socket_frames, stops
from conversations.models import Conversation, Message
from conversations.socket_sessions import Refusal, SocketSession, authorize, begin, open_socket
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


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation_id: int
    group: str

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
            # Update frames touch no database: past Channels' dispatch, which would hop to
            # a thread to close old database connections (see the adapter).
            if message["type"] == "reply.frame" and channels_adapter.may_bypass_dispatch():
                await self.reply_frame(message)
            else:
                await super().dispatch(message)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except CLIENT_GONE:
            pass  # the page is closing its socket; its disconnect follows

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        if services.may_chat(user):
            self.session_key = getattr(self.scope.get("session"), "session_key", None) or ""
            self.auth_hash = user.get_session_auth_hash()
        if not self.session_key:
            await self._refuse()
            return
        self.group = runner.group(self.conversation_id)
        self.account_group = account_group(user.pk)
        # Join first, then read the state: nothing published after the read is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.channel_layer.group_add(self.account_group, self.channel_name)
        turn = await database_sync_to_async(open_socket)(user.pk, self.conversation_id)
        if turn is None:
            await self._leave_groups()
            await self._refuse()
            return
        await self.accept()
        self.answered = True
        await self._send_turn(turn)

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        await self._leave_groups()

    async def _leave_groups(self) -> None:
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
        await self.receive_json(socket_frames.decode(text_data), **kwargs)

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
        if isinstance(content, socket_frames.Unreadable):
            await self._composer_error(content.error, content.text, conversation, "send")
        elif action == "stop":
            await self._stop(conversation)

    async def _turn(self, action: str, content: dict) -> None:
        models = await _model_names()
        user = self.scope.get("user")
        result = await database_sync_to_async(begin)(
            self._socket_session(user.pk), self.conversation_id, action, content, models
        )
        if result is None:
            await self._refuse()
            return
        if isinstance(result, Refusal):
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
            await stops.request_stop(conversation.pk)
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

    def _socket_session(self, user_id: int) -> SocketSession:
        return SocketSession(user_id, self.session_key, self.auth_hash)

    async def _conversation(self) -> Conversation | None:
        """The conversation, if this socket's session may still use it (see `authorize`)."""
        user = self.scope.get("user")
        return await database_sync_to_async(authorize)(
            self._socket_session(user.pk), self.conversation_id
        )

    async def _send_latest_turn(self) -> None:
        await self._send_turn(await database_sync_to_async(_latest_turn)(self.conversation_id))

    async def _send_turn(self, turn: list[Message]) -> None:
        """The turn's messages, a streaming reply as its snapshot has it."""
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


def _latest_turn(conversation_id: int) -> list[Message]:
    conversation = Conversation.objects.get(pk=conversation_id)  # gone: DoesNotExist
    return services.latest_turn(conversation.pk)


def _is_streaming(message_id: int) -> bool:
    return Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).exists()


def _streaming_reply(conversation_id: int) -> Message | None:
    return Message.objects.filter(
        conversation_id=conversation_id, status=Message.Status.STREAMING
    ).first()


async def _model_names() -> list[str]:
    return await catalog.model_names()
