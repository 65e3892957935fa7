"""The generation runner: one asyncio task per reply, independent of any socket.

It streams from the engine, keeps the reply text, and publishes batched HTML updates to
the conversation's group. Batching adapts to load: the publisher takes everything that
arrived while its previous publish was in flight, and waits at least BATCH_INTERVAL
between publishes, so a busy worker sends larger, rarer updates instead of queueing.
Every update carries a sequence number and lands in the Redis snapshot first (see
`snapshots`). A stop sent to the conversation's stop group, from any worker, cancels the
upstream request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from conversations import fragments, services, snapshots
from conversations.markdown import StreamingRenderer
from conversations.models import Conversation, Message
from llm import catalog
from llm.client import stream_chat
from llm.errors import LLMError
from llm.events import Delta, Finished
from llm.tokens import estimate_prompt_tokens, estimate_tokens
from usage.services import Admission, Refused

log = logging.getLogger(__name__)

BATCH_INTERVAL = 0.05
CHECKPOINT_INTERVAL = 1.0
TITLE_TIMEOUT = 15.0
TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts like this. "
    "Answer with the title only, no quotes.\n\nUser: {question}\n\nAssistant: {answer}"
)

# Runners hold no state that matters for correctness; this only keeps their tasks alive.
_running: set[asyncio.Task[None]] = set()


def stop_group(conversation_id: int) -> str:
    """The group a conversation's runner listens on for stop."""
    return f"stop-{conversation_id}"


def group(conversation_id: int) -> str:
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


async def request_stop(conversation_id: int) -> None:
    """Ask the conversation's runner, on whichever worker, to stop."""
    await get_channel_layer().group_send(stop_group(conversation_id), {"type": "reply.stop"})


@dataclass(eq=False)  # hashable by identity: the worker's keeper holds a set of them
class ReplyRunner:
    turn: services.Turn
    admission: Admission | None
    refused: Refused | None = None
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    seq: int = 0
    stopped: bool = False
    finished: Finished | None = None
    first_token_at: float | None = None

    def __post_init__(self) -> None:
        self.reply = self.turn.reply
        self.conversation = self.turn.conversation
        self.group = group(self.conversation.pk)
        self.layer = get_channel_layer()
        self.renderer = StreamingRenderer()
        self.dirty = asyncio.Event()
        self.publish_lock = asyncio.Lock()
        self.checkpointed_length = 0
        self.started = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def run(self) -> None:
        """Stream, publish, save, charge, and title the conversation."""
        status, error = Message.Status.COMPLETE, ""
        helpers: list[asyncio.Task[None]] = []
        stop_channel = ""
        try:
            await snapshots.start(self.reply.pk)
            await self._publish_turn()
            if self.refused is not None:
                status, error = Message.Status.ERROR, self.refused.message
                return
            stop_channel = await self.layer.new_channel()
            await self.layer.group_add(stop_group(self.conversation.pk), stop_channel)
            pump = asyncio.ensure_future(self._stream())
            helpers = [
                asyncio.ensure_future(self._listen_for_stop(stop_channel, pump)),
                asyncio.ensure_future(self._publish_loop()),
            ]
            _keeper().add(self)
            try:
                await pump
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
            _keeper().discard(self)
            async with self.publish_lock:
                for helper in helpers:
                    helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if stop_channel:
                await self.layer.group_discard(stop_group(self.conversation.pk), stop_channel)
            await self._finish(status, error)
        if status == Message.Status.COMPLETE and self.turn.first_exchange:
            await self._set_title()

    def _describe(self, exc: LLMError) -> str:
        what = f"{self.reply.model} failed: {exc.message.rstrip('.')}."
        return f"{what} The text so far is kept." if self.parts else what

    async def _stream(self) -> None:
        async with aclosing(stream_chat(self.reply.model, self.turn.messages)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    if event.text:
                        if self.first_token_at is None:
                            self.first_token_at = time.monotonic()
                        self.parts.append(event.text)
                        self.pending.append(event.text)
                        self.dirty.set()
                elif isinstance(event, Finished):
                    self.finished = event

    async def _listen_for_stop(self, channel: str, pump: asyncio.Future[None]) -> None:
        while True:
            message = await self.layer.receive(channel)
            if message.get("type") == "reply.stop":
                self.stopped = True
                pump.cancel()
                return

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.dirty.wait()
            began = loop.time()
            async with self.publish_lock:
                self.dirty.clear()
                await self._publish_update()
            # At most one update per BATCH_INTERVAL; tokens arriving meanwhile coalesce.
            await asyncio.sleep(max(0.0, BATCH_INTERVAL - (loop.time() - began)))

    async def _publish_update(self) -> None:
        delta = "".join(self.pending)
        self.pending.clear()
        if not delta:
            return
        self.renderer.feed(delta)
        rendered = self.renderer.update()
        self.seq += 1
        html = fragments.update_frame(self.reply.pk, rendered.appended, rendered.tail)
        await snapshots.append(self.reply.pk, delta, self.seq)
        await self._send(html)

    async def _send(self, html: str) -> None:
        await self.layer.group_send(
            self.group,
            {"type": "reply.frame", "message": self.reply.pk, "seq": self.seq, "html": html},
        )

    async def _publish_turn(self) -> None:
        """seq 0: the user's message, the empty reply, and the sidebar entry."""
        items = [fragments.message_item(self.reply, "")]
        if self.turn.user_message is not None:
            items.insert(0, fragments.message_item(self.turn.user_message))
        await self._send(fragments.messages_frame(items, self.conversation))

    async def _finish(self, status: str, error: str) -> None:
        text = self.text
        finished = self.finished
        prompt_tokens = completion_tokens = eval_ns = None
        usage_source = "estimated"
        if finished is not None:
            prompt_tokens, completion_tokens = finished.prompt_tokens, finished.completion_tokens
            usage_source = finished.usage_source
            eval_ns = finished.timings.eval_duration
        elif text or status != Message.Status.ERROR:
            prompt_tokens = estimate_prompt_tokens(self.turn.messages)
            completion_tokens = estimate_tokens(text)
        if eval_ns is None and completion_tokens and self.first_token_at is not None:
            eval_ns = int((time.monotonic() - self.first_token_at) * 1e9)
        reply = await database_sync_to_async(services.finish_reply)(
            self.reply,
            content=text,
            status=status,
            error=error,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            eval_duration_ns=eval_ns,
            usage_source=usage_source if completion_tokens is not None else "",
        )
        if self.admission is not None:
            try:
                await self.admission.charge(
                    model=reply.model,
                    connection=await self._connection_name(),
                    prompt_tokens=prompt_tokens or 0,
                    completion_tokens=completion_tokens or 0,
                    usage_source=usage_source,
                    status=_LEDGER_STATUS[status],
                    error=error,
                )
            except Exception:
                log.exception("could not charge reply %s", reply.pk)
        self.seq += 1
        await snapshots.finish(reply.pk, self.seq)
        await self._send(fragments.messages_frame([fragments.message_item(reply)]))

    async def _connection_name(self) -> str:
        try:
            return (await catalog.resolve(self.reply.model)).connection_name
        except Exception:
            return ""

    async def _set_title(self) -> None:
        question = self.turn.user_message.content if self.turn.user_message else ""
        prompt = TITLE_PROMPT.format(question=question[:1000], answer=self.text[:1000])
        title = ""
        try:
            async with asyncio.timeout(TITLE_TIMEOUT):
                events = stream_chat(
                    self.reply.model,
                    [{"role": "user", "content": prompt}],
                    options={"num_predict": 24, "temperature": 0.2},
                    stream=False,
                )
                async with aclosing(events) as stream:
                    pieces = [e.text async for e in stream if isinstance(e, Delta)]
                title = services.clean_title("".join(pieces))
        except (LLMError, TimeoutError) as exc:
            log.info("no title from %s: %s", self.reply.model, exc)
        if not title:
            return  # the first words of the question stay the title
        conversation = await database_sync_to_async(_save_title)(self.conversation.pk, title)
        if conversation is not None:
            await self.layer.group_send(
                self.group,
                {"type": "conversation.title", "html": fragments.title_frame(conversation)},
            )


class _Keeper:
    """One task per worker: heartbeats and database checkpoints for all its runners.

    Batched so that a worker with 150 replies makes one Redis round trip and one
    database call per second, not 150 of each.
    """

    def __init__(self) -> None:
        self.runners: set[ReplyRunner] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, runner: ReplyRunner) -> None:
        self.runners.add(runner)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, runner: ReplyRunner) -> None:
        self.runners.discard(runner)

    async def _run(self) -> None:
        while self.runners:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            runners = list(self.runners)
            try:
                await snapshots.beat_many([r.reply.pk for r in runners])
                changed = []
                for r in runners:
                    text = r.text
                    if len(text) != r.checkpointed_length:
                        changed.append((r.reply.pk, text))
                        r.checkpointed_length = len(text)
                if changed:
                    await database_sync_to_async(services.checkpoint_many)(changed)
            except Exception:
                log.exception("checkpoint failed")


_keepers: dict[int, _Keeper] = {}


def _keeper() -> _Keeper:
    loop = asyncio.get_running_loop()
    keeper = _keepers.get(id(loop))
    if keeper is None:
        keeper = _keepers[id(loop)] = _Keeper()
    return keeper


def _save_title(conversation_id: int, title: str) -> Conversation | None:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is not None:
        services.rename(conversation, title)
    return conversation


_LEDGER_STATUS = {
    Message.Status.COMPLETE: "ok",
    Message.Status.STOPPED: "stopped",
    Message.Status.INTERRUPTED: "interrupted",
    Message.Status.ERROR: "error",
}
