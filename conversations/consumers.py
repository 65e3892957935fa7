"""The chat websocket: authorizes, validates, saves and hands work to the runner.

It never streams itself. On connect (and whenever it notices a gap in a reply's sequence
numbers) it sends the latest turn from the snapshot or the database, then forwards only
updates newer than what it sent. A reply it shows as streaming that goes quiet for QUIET
seconds is checked against its snapshot, so a lost frame, even the final one, is
recovered without waiting for another.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from conversations import fragments, runner, services, snapshots
from conversations.forms import MessageForm
from conversations.models import Conversation, Message
from llm import catalog
from llm.tokens import estimate_prompt_tokens
from usage.services import Refused, admit

log = logging.getLogger(__name__)

FORBIDDEN = 4403
QUIET = 2.0


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation_id: int
    group: str

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        # A frame that is not JSON is ignored (receive_json skips non-dicts), not fatal.
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_seq: dict[int, int] = {}
        # Replies this socket shows as streaming: when their last frame came (loop time).
        self.streaming: dict[int, float] = {}
        self.watcher: asyncio.Task[None] | None = None
        # Handlers run one at a time; the watcher takes this too, so that what it sends
        # never interleaves with a frame.
        self.lock = asyncio.Lock()

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
        if not services.may_chat(user) or await self._conversation() is None:
            await self.close(code=FORBIDDEN)
            return
        self.group = runner.group(self.conversation_id)
        # Join first, then read the state: nothing published after the read is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_latest_turn()

    async def disconnect(self, code: int) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # -- from the page --------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # Frames carry no CSRF token: every one is authorized again (for a turn, in the
        # same database call that begins it).
        action = content.get("action") if isinstance(content, dict) else None
        if action in {"send", "edit", "regenerate"}:
            await self._turn(action, content)
            return
        conversation = await self._conversation()
        if conversation is None:
            await self.close(code=FORBIDDEN)
            return
        if action == "stop":
            await self._stop(conversation)

    async def _turn(self, action: str, content: dict) -> None:
        models = await _model_names()
        user = self.scope.get("user")
        result = await database_sync_to_async(_begin)(
            user.pk, self.conversation_id, action, content, models
        )
        if result is None:
            await self.close(code=FORBIDDEN)
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
            refused = exc  # the runner shows it in place of the reply, with Retry
        except Exception:
            # Redis is down: the saved message gets an error reply with Retry, not a
            # socket that dies and a reply stuck "writing".
            log.exception("the usage meter failed for conversation %s", self.conversation_id)
            refused = Refused("unavailable", 5)
        runner.start(result, admission, refused)

    async def _stop(self, conversation: Conversation) -> None:
        reply = await database_sync_to_async(_streaming_reply)(conversation.pk)
        if reply is None:
            return
        if await snapshots.is_alive_async(reply.pk):
            await runner.request_stop(conversation.pk)
            return
        # Its runner is gone (the worker died): settle the row here, and tell every tab.
        snapshot = await snapshots.read(reply.pk)
        await database_sync_to_async(services.interrupt_reply)(
            reply, snapshot.text if snapshot else None
        )
        await self.channel_layer.group_send(self.group, {"type": "turn.refresh"})

    async def _composer_error(
        self, error: str, text: str, conversation: Conversation, action: str
    ) -> None:
        restore = text if action == "send" else ""
        await self.send(
            text_data=fragments.composer_error_frame(
                error, content=restore, conversation=conversation
            )
        )

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
        """A streaming reply went quiet: re-sync if its snapshot is ahead of this socket."""
        if message_id not in self.streaming:
            return
        snapshot = await snapshots.read(message_id)
        if (
            snapshot is None
            or not snapshot.is_streaming
            or snapshot.seq > self.last_seq.get(message_id, -1)
        ):
            self.streaming.pop(message_id, None)
            await self._send_latest_turn()

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

    async def _conversation(self) -> Conversation | None:
        user = self.scope.get("user")
        return await database_sync_to_async(services.find_conversation_for_user)(
            user.pk, self.conversation_id
        )

    async def _send_latest_turn(self) -> None:
        turn = await database_sync_to_async(_latest_turn)(self.conversation_id)
        if not turn:
            return
        items = []
        for message in turn:
            text = None
            if message.is_streaming:
                snapshot = await snapshots.read(message.pk)
                if snapshot is not None and snapshot.is_streaming:
                    text = snapshot.text
                    self.last_seq[message.pk] = snapshot.seq
                    self._watch(message.pk)
                elif snapshot is not None:
                    # Finished between our two reads: the database has the final reply.
                    message = await database_sync_to_async(Message.objects.get)(pk=message.pk)
                    self.last_seq[message.pk] = snapshot.seq
            items.append(fragments.message_item(message, text))
        await self.send(text_data=fragments.messages_frame(items))


@dataclass
class _Refusal:
    error: str
    text: str
    conversation: Conversation


def _begin(
    user_id: int, conversation_id: int, action: str, content: dict, models: list[str]
) -> services.Turn | _Refusal | None:
    """Authorize, validate and begin a turn, in one trip to the database thread.

    None when the person may no longer use the conversation.
    """
    conversation = services.find_conversation_for_user(user_id, conversation_id)
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
