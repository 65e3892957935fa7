"""The generation runner: one asyncio task per reply, independent of any socket.

It streams from the engine and keeps the reply text; the worker's publisher sends its
updates to the conversation's group (`publisher`), and the worker's keeper beats and
checkpoints for it (`keeper`). Every update carries a sequence number and lands in the
Redis snapshot no later than its frame (see `snapshots`). At the end it saves the reply,
charges it and publishes the final frame; after a first exchange it has the conversation
titled (`titles`). A stop for the conversation, from any worker (`stops`), cancels the
upstream request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chatsite import channels_redis_adapter
from conversations import (
    capabilities,
    charging,
    fragments,
    parameters,
    services,
    snapshots,
    titles,
)
from conversations.keeper import keepers
from conversations.markdown import StreamingRenderer
from conversations.models import Message
from conversations.publisher import publishers
from conversations.reasoning import ThinkSplitter, Transcript, think_param
from conversations.stops import stop_listeners
from conversations.thinking_frames import ThinkingBlock
from llm import context as llm_context
from llm.client import stream_chat
from llm.errors import LLMError
from llm.events import Delta, Finished
from llm.tokens import TokenUsage, estimate_prompt_tokens, usage_or_estimate
from usage.services import Admission, Refused

log = logging.getLogger(__name__)

# Runners hold no state that matters for correctness; this only keeps their tasks alive.
_running: set[asyncio.Task[None]] = set()


def group(conversation_id: int) -> str:
    """The group of a conversation's open sockets."""
    return f"conv-{conversation_id}"


def start(turn: services.Turn, admission: Admission | None, refused: Refused | None = None) -> None:
    """Run the reply in the background of this worker."""
    runner = ReplyRunner(turn, admission, refused)
    task = asyncio.get_running_loop().create_task(runner.run(), name=f"reply-{turn.reply.pk}")
    _running.add(task)
    task.add_done_callback(_running.discard)


async def wait_for_runners(within: float = 10.0) -> None:
    """Wait for this worker's runners to end (tests and benchmarks)."""
    if _running:
        await asyncio.wait(list(_running), timeout=within)


@dataclass(eq=False)  # hashable by identity: the worker's keeper holds a set of them
class ReplyRunner:
    turn: services.Turn
    admission: Admission | None
    refused: Refused | None = None
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not rendered yet
    unsaved: list[str] = field(default_factory=list)  # rendered, not yet in the snapshot
    saved_bytes: int = 0  # UTF-8 bytes of text in the snapshot
    seq: int = 0
    stopped: bool = False
    finished: Finished | None = None
    first_token_at: float | None = None
    thinking_parts: list[str] = field(default_factory=list)
    pending_thinking: list[str] = field(default_factory=list)  # not published yet
    transcript: list[str] = field(default_factory=list)  # the snapshot text, as taken
    thinking_at: float | None = None  # the first thinking
    started_at: float = field(default_factory=time.monotonic)  # for the time to first token
    pump: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.reply = self.turn.reply
        self.conversation = self.turn.conversation
        self.group = group(self.conversation.pk)
        self.layer = get_channel_layer()
        self.renderer = StreamingRenderer()
        self.frame: dict = {}  # the latest update, as sent to the group
        # Where the snapshot script publishes frames itself; "" to send them with group_send.
        self.channel = channels_redis_adapter.group_channel(self.layer, self.group)
        self.checkpointed_length = 0
        self.splitter = ThinkSplitter()  # `<think>` tags in the content
        self.encoder = Transcript()
        self.thinking_block = ThinkingBlock(self.reply.pk)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_parts)

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> None:
        """Stream, publish, save, charge, and title the conversation."""
        llm_context.request_id.set(f"reply-{self.reply.pk}")  # names it in engine logs
        status, error = Message.Status.COMPLETE, ""
        watching = False
        # Beating from the start: other workers take a reply without a heartbeat for dead.
        keepers.get().add(self)
        try:
            await self._start_turn()
            if self.refused is not None:
                status, error = Message.Status.ERROR, self.refused.message
                return
            await stop_listeners.get().watch(self.conversation.pk, self.stop)
            watching = True
            self.publisher = publishers.get()
            self.pump = asyncio.ensure_future(self._stream())
            if self.stopped:
                self.pump.cancel()
            try:
                await self.pump
            except asyncio.CancelledError:
                if not self.stopped:
                    raise
                status = Message.Status.STOPPED
        except LLMError as exc:
            status, error = Message.Status.ERROR, self._describe(exc)
        except asyncio.CancelledError:
            status, error = Message.Status.INTERRUPTED, services.INTERRUPTED_MESSAGE
            raise
        except Exception:
            log.exception("reply %s failed", self.reply.pk)
            status = Message.Status.ERROR
            error = f"Something went wrong on the server while {self.reply.model} was answering."
        finally:
            await self._tidy_up(watching)
            try:
                await self._finish(status, error)
            finally:
                keepers.get().discard(self)  # saved: no longer streaming
        if status == Message.Status.COMPLETE and self.turn.first_exchange:
            await self._set_title()

    def _describe(self, exc: LLMError) -> str:
        what = f"{self.reply.model} failed: {exc.message.rstrip('.')}."
        return f"{what} The text so far is kept." if self.parts else what

    async def _stream(self) -> None:
        options = parameters.options_for(self.conversation)
        chat = stream_chat(
            self.reply.model, self.turn.messages, options=options, think=await self._think()
        )
        async with aclosing(chat) as events:
            async for event in events:
                if isinstance(event, Delta):
                    if event.text or event.thinking:
                        self._arrive(event.thinking, event.text)
                        self.publisher.mark(self)
                elif isinstance(event, Finished):
                    self.finished = event

    async def _think(self) -> bool | str | None:
        """The conversation's think switch, for a model that can think (a model that cannot
        refuses the field: the switch is hidden for it, but its value stays saved)."""
        think = think_param(self.conversation.think)
        if think is None or not await capabilities.capable_async(self.reply.model, "thinking"):
            return None
        return think

    def _arrive(self, thinking: str, text: str) -> None:
        """A piece of thinking and of content; `<think>` tags in the content move what
        they hold to the thinking."""
        if text:
            tagged, text = self.splitter.feed(text)
            thinking += tagged
        self._keep(thinking, text)

    def _keep(self, thinking: str, text: str) -> None:
        now = time.monotonic()
        if thinking:
            if self.thinking_at is None:
                self.thinking_at = now
            self.thinking_parts.append(thinking)
            self.pending_thinking.append(thinking)
        if text:
            if self.first_token_at is None:
                self.first_token_at = now
            self.parts.append(text)
            self.pending.append(text)

    def _thinking_ms(self) -> int | None:
        """From the first thinking to the first answer (or to now, if none came yet)."""
        if self.thinking_at is None:
            return None
        end = self.first_token_at if self.first_token_at is not None else time.monotonic()
        return max(0, int((end - self.thinking_at) * 1000))

    def stop(self) -> None:
        """A stop arrived: end the upstream request; the reply is saved as stopped."""
        self.stopped = True
        if self.pump is not None:
            self.pump.cancel()

    async def _tidy_up(self, watching: bool) -> None:
        """Stop listening for stops and leave the publisher before the final frame."""
        if watching:
            stop_listeners.get().unwatch(self.conversation.pk, self.stop)
        # A Redis blip here must not keep the reply from being saved and charged (and its
        # concurrency slot from being given back).
        try:
            # No update of ours may be published after the final frame.
            await publishers.get().settle(self)
        except Exception:
            log.exception("could not tidy up after reply %s", self.reply.pk)

    # -- updates, for the publisher ---------------------------------------------------

    def take_update(self) -> snapshots.Write | None:
        """Render what arrived since the last round: this runner's part of the next round.

        The write carries the frame when the snapshot script can publish it itself;
        otherwise the publisher sends `self.frame` through the layer (`send_frame`).
        """
        if not self.pending and not self.pending_thinking:
            return None
        thinking, delta = "".join(self.pending_thinking), "".join(self.pending)
        self.pending_thinking.clear()
        self.pending.clear()
        html = self._thinking_html(thinking)
        if delta:
            self.renderer.feed(delta)
            rendered = self.renderer.update()
            html += fragments.update_frame(self.reply.pk, rendered.appended, rendered.tail)
        self.seq += 1
        self._take(thinking, delta)
        self.frame = {
            "type": "reply.frame",
            "message": self.reply.pk,
            "seq": self.seq,
            "html": html,
        }
        return self._write()

    def _thinking_html(self, thinking: str) -> str:
        """The Thinking block's part of the next update ("" when it does not change)."""
        if not thinking and self.thinking_block.shown != "open":
            return ""  # the common case, an answer token: no joins of the whole thinking
        ms = self._thinking_ms() if self.first_token_at is not None else None
        return self.thinking_block.update(
            thinking,
            self.thinking_parts,
            answering=self.first_token_at is not None,
            seconds=None if ms is None else ms / 1000,
        )

    def _take(self, thinking: str, delta: str) -> None:
        """Owe the snapshot the transcript of these pieces."""
        encoded = self.encoder.encode(thinking, delta)
        if encoded:
            self.unsaved.append(encoded)
            self.transcript.append(encoded)

    def _write(self, done: bool = False) -> snapshots.Write:
        delta = "".join(self.unsaved) if len(self.unsaved) != 1 else self.unsaved[0]
        return snapshots.Write(
            self.reply.pk,
            self.saved_bytes,
            delta,
            self.seq,
            done=done,
            channel=self.channel,
            payload=channels_redis_adapter.payload(self.layer, self.frame) if self.channel else b"",
        )

    def saved(self, write: snapshots.Write) -> None:
        """The snapshot holds `write`: its text is no longer owed."""
        self.unsaved.clear()
        self.saved_bytes = write.offset + snapshots.utf8_length(write.delta)

    def not_saved(self, write: snapshots.Write, error: BaseException) -> None:
        """`write` failed: its text stays owed. If the snapshot lost text (Redis restarted,
        the key expired), the next write carries the whole text rendered so far."""
        log.warning("reply %s: update %s not published: %s", self.reply.pk, write.seq, error)
        if snapshots.is_hole(error):
            self.unsaved = ["".join(self.transcript)]
            self.saved_bytes = 0

    async def send_frame(self) -> None:
        """Publish the latest frame through the channel layer."""
        await self.layer.group_send(self.group, self.frame)

    async def _start_turn(self) -> None:
        """Start the snapshot and publish seq 0: the user's message, the empty reply, and
        the sidebar entry; in one step when the snapshot script may publish (not behind the
        channel layer's per-connection lock, which the sockets' joins wait on too)."""
        items = [fragments.message_item(self.reply, "")]
        if self.turn.user_message is not None:
            items.insert(0, fragments.message_item(self.turn.user_message))
        html = fragments.messages_frame(items, self.conversation, removed=self.turn.removed)
        self.frame = {"type": "reply.frame", "message": self.reply.pk, "seq": 0, "html": html}
        if self.channel:
            payload = channels_redis_adapter.payload(self.layer, self.frame)
            await snapshots.start(self.reply.pk, self.channel, payload)
        else:
            await snapshots.start(self.reply.pk)
            await self.send_frame()

    # -- the end ----------------------------------------------------------------------

    async def _finish(self, status: str, error: str) -> None:
        """Save the reply, charge it, and publish its final frame."""
        self._keep(*self.splitter.flush())
        text = self.text
        usage = self._count_tokens(status, text)
        try:
            reply = await self._save(status, error, text, usage)
        finally:
            # Charged even when saving failed: the tokens were spent all the same.
            await self._charge(status, error, usage)
        await self._publish_final(reply, text)

    def _count_tokens(self, status: str, text: str) -> TokenUsage | None:
        """The upstream's counts, else estimates (thinking counts as generated text);
        None when nothing was generated."""
        generated = len(text) + sum(len(piece) for piece in self.thinking_parts)
        if self.finished is None and not generated and status == Message.Status.ERROR:
            return None
        return usage_or_estimate(
            self.finished,
            prompt_estimate=estimate_prompt_tokens(self.turn.messages),
            completion_chars=generated,
        )

    def _eval_ns(self, usage: TokenUsage | None) -> int | None:
        """How long the model took to write the reply: its own figure, else measured here."""
        if self.finished is not None and self.finished.timings.eval_duration is not None:
            return self.finished.timings.eval_duration
        if usage is None or not usage.completion_tokens or self.first_token_at is None:
            return None
        return int((time.monotonic() - self.first_token_at) * 1e9)

    async def _save(self, status: str, error: str, text: str, usage: TokenUsage | None) -> Message:
        return await database_sync_to_async(services.finish_reply)(
            self.reply,
            content=text,
            html=self._final_html(text),
            status=status,
            error=error,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            eval_duration_ns=self._eval_ns(usage),
            usage_source=usage.source if usage else "",
            thinking=self.thinking,
            thinking_ms=self._thinking_ms(),
        )

    def _final_html(self, text: str) -> str | None:
        """The whole reply's HTML from the streaming renderer (finished blocks are not
        rendered again), or None to have it rendered from scratch."""
        try:
            if self.pending:
                self.renderer.feed("".join(self.pending))
            # The renderer holds exactly the text once everything was fed to it.
            self.renderer.update()
            html = self.renderer.done_html + self.renderer.tail_html
        except Exception:
            log.exception("reply %s: rendering from scratch", self.reply.pk)
            return None
        return html if text else ""

    def _ttft_ms(self) -> int | None:
        """From the start of the run to the reply's first text (ms); None if none came."""
        if self.first_token_at is None:
            return None
        return int((self.first_token_at - self.started_at) * 1000)

    async def _charge(self, status: str, error: str, usage: TokenUsage | None) -> None:
        if self.admission is None:
            return
        try:
            await charging.charge(
                self.admission,
                self.reply.model,
                usage,
                status=charging.LEDGER_STATUS[status],
                error=error,
                ttft_ms=self._ttft_ms(),
            )
        except Exception:
            log.exception("could not charge reply %s", self.reply.pk)

    async def _publish_final(self, reply: Message, text: str) -> None:
        """The final frame: the whole saved message, marked so that sockets stop waiting
        for this reply; with the snapshot's status (done) in the same step when it can."""
        self.seq += 1
        self.frame = {
            "type": "reply.frame",
            "message": reply.pk,
            "seq": self.seq,
            "final": True,
            "html": fragments.messages_frame([fragments.message_item(reply)]),
        }
        self._take("".join(self.pending_thinking), "".join(self.pending))
        self.pending_thinking.clear()
        self.pending.clear()
        write = self._write(done=True)
        error = await self._write_final_snapshot(write, "".join(self.transcript))
        if error is not None or not write.channel:
            try:
                await self.send_frame()
            except Exception:
                log.exception("could not publish the end of reply %s", reply.pk)

    async def _write_final_snapshot(
        self, write: snapshots.Write, text: str
    ) -> BaseException | None:
        """Write the end of the snapshot; the whole text again if it lost some. The error
        that remains, if any."""
        (error,) = await snapshots.write_many([write])
        if error is not None and snapshots.is_hole(error):
            whole = dataclasses.replace(write, offset=0, delta=text)
            (error,) = await snapshots.write_many([whole])
        if error is not None:
            log.warning("could not save the final snapshot of reply %s: %s", self.reply.pk, error)
        return error

    async def _set_title(self) -> None:
        if self.admission is None:
            return
        question = self.turn.user_message.content if self.turn.user_message else ""
        conversation = await titles.title_conversation(
            self.admission.user, self.reply.model, self.conversation.pk, question, self.text
        )
        if conversation is not None:
            await self.layer.group_send(
                self.group,
                {"type": "conversation.title", "html": fragments.title_frame(conversation)},
            )
