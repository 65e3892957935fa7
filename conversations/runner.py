"""The generation runner: one asyncio task per reply, independent of any socket.

It streams from the engine, keeps the reply text, and has its updates published to the
conversation's group by the worker's publisher (one task per worker, like the keeper):
each round the publisher takes every runner that has new text, renders each one's
update, and writes all their snapshots and frames to Redis in one round trip. Batching
adapts to load: tokens that arrive while a round is in flight wait for the next one, and
the pause between rounds grows with the event loop's lag (bounded, see `next_interval`),
so a busy worker sends larger, rarer updates instead of queueing. Every update carries a
sequence number and lands in the Redis snapshot no later than its frame (see
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
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

from conversations import fragments, services, snapshots
from conversations.markdown import StreamingRenderer
from conversations.models import Conversation, Message
from llm import catalog
from llm import context as llm_context
from llm.client import stream_chat
from llm.errors import LLMError
from llm.events import Delta, Finished
from llm.tokens import estimate_prompt_tokens, estimate_tokens
from usage.services import Admission, Refused, admit

log = logging.getLogger(__name__)

# Pause between publishing rounds: BATCH_INTERVAL on an idle worker, growing by LAG_GAIN
# seconds per second of event-loop lag up to MAX_BATCH_INTERVAL, so that at most
# MAX_BATCH_INTERVAL (plus a round trip) separates a token from the frame that carries it.
BATCH_INTERVAL = 0.05
MAX_BATCH_INTERVAL = 0.15
LAG_GAIN = 4.0
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
    pending: list[str] = field(default_factory=list)  # not rendered yet
    unsaved: list[str] = field(default_factory=list)  # rendered, not yet in the snapshot
    saved_bytes: int = 0  # UTF-8 bytes of text in the snapshot
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
        self.frame: dict = {}  # the latest update, as sent to the group
        self.channel = _pubsub_channel(self.layer, self.group)
        self.checkpointed_length = 0
        self.started = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def run(self) -> None:
        """Stream, publish, save, charge, and title the conversation."""
        llm_context.request_id.set(f"reply-{self.reply.pk}")  # names it in engine logs
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
            self.publisher = _publisher()
            pump = asyncio.ensure_future(self._stream())
            helpers = [asyncio.ensure_future(self._listen_for_stop(stop_channel, pump))]
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
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            # Each step on its own: a Redis blip in one must not keep the reply from being
            # saved and charged (and its concurrency slot from being given back).
            try:
                # No update of ours may be published after the final frame.
                await _publisher().settle(self)
                if stop_channel:
                    await self.layer.group_discard(stop_group(self.conversation.pk), stop_channel)
            except Exception:
                log.exception("could not tidy up after reply %s", self.reply.pk)
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
                        self.publisher.mark(self)
                elif isinstance(event, Finished):
                    self.finished = event

    async def _listen_for_stop(self, channel: str, pump: asyncio.Future[None]) -> None:
        while True:
            message = await self.layer.receive(channel)
            if message.get("type") == "reply.stop":
                self.stopped = True
                pump.cancel()
                return

    def take_update(self) -> snapshots.Write | None:
        """Render what arrived since the last round: this runner's part of the next round.

        The write carries the frame when the snapshot script can publish it itself (see
        `_pubsub_channel`); otherwise the publisher sends `self.frame` through the layer.
        """
        if not self.pending:
            return None
        delta = "".join(self.pending)
        self.pending.clear()
        self.renderer.feed(delta)
        rendered = self.renderer.update()
        self.seq += 1
        self.unsaved.append(delta)
        self.frame = {
            "type": "reply.frame",
            "message": self.reply.pk,
            "seq": self.seq,
            "html": fragments.update_frame(self.reply.pk, rendered.appended, rendered.tail),
        }
        return self._write(self.channel)

    def _write(self, channel: str, done: bool = False) -> snapshots.Write:
        delta = "".join(self.unsaved) if len(self.unsaved) != 1 else self.unsaved[0]
        return snapshots.Write(
            self.reply.pk,
            self.saved_bytes,
            delta,
            self.seq,
            done=done,
            channel=channel,
            payload=self.layer.serialize(self.frame) if channel else b"",
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
            rendered = self.text
            pending = sum(len(piece) for piece in self.pending)
            self.unsaved = [rendered[: len(rendered) - pending] if pending else rendered]
            self.saved_bytes = 0

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
        await self._send(
            fragments.messages_frame(items, self.conversation, removed=self.turn.removed)
        )

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
        try:
            reply = await database_sync_to_async(services.finish_reply)(
                self.reply,
                content=text,
                html=self._final_html(text),
                status=status,
                error=error,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                eval_duration_ns=eval_ns,
                usage_source=usage_source if completion_tokens is not None else "",
            )
        finally:
            # Charged even when saving failed: the tokens were spent all the same.
            if self.admission is not None:
                try:
                    await self.admission.charge(
                        model=self.reply.model,
                        connection=await self._connection_name(),
                        prompt_tokens=prompt_tokens or 0,
                        completion_tokens=completion_tokens or 0,
                        usage_source=usage_source,
                        status=_LEDGER_STATUS[status],
                        error=error,
                    )
                except Exception:
                    log.exception("could not charge reply %s", self.reply.pk)
        # The final frame: the whole saved message, marked so that consumers stop waiting
        # for this reply; with the snapshot's status (done) in the same step when it can.
        self.seq += 1
        self.frame = {
            "type": "reply.frame",
            "message": reply.pk,
            "seq": self.seq,
            "final": True,
            "html": fragments.messages_frame([fragments.message_item(reply)]),
        }
        self.unsaved.extend(self.pending)
        self.pending.clear()
        channel = self.channel
        write = self._write(channel, done=True)
        (error,) = await snapshots.write_many([write])
        if error is not None and snapshots.is_hole(error):
            write = snapshots.Write(reply.pk, 0, text, self.seq, done=True, channel=channel,
                                    payload=write.payload)  # fmt: skip
            (error,) = await snapshots.write_many([write])
        if error is not None:
            log.warning("could not save the final snapshot of reply %s: %s", reply.pk, error)
        if error is not None or not channel:
            try:
                await self.layer.group_send(self.group, self.frame)
            except Exception:
                log.exception("could not publish the end of reply %s", reply.pk)

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

    async def _connection_name(self) -> str:
        try:
            return (await catalog.resolve(self.reply.model)).connection_name
        except Exception:
            return ""

    async def _set_title(self) -> None:
        if self.admission is None:
            return
        try:
            # The title costs tokens too: the same meter, and no title when it says no.
            admission = await admit(self.admission.user, door="web")
        except Exception as exc:  # refused, or the meter is unreachable
            log.info("no title for reply %s: %s", self.reply.pk, exc)
            return  # the first words of the question stay the title
        question = self.turn.user_message.content if self.turn.user_message else ""
        prompt = TITLE_PROMPT.format(question=question[:1000], answer=self.text[:1000])
        title, pieces, finished, error = "", [], None, ""
        try:
            async with asyncio.timeout(TITLE_TIMEOUT):
                events = stream_chat(
                    self.reply.model,
                    [{"role": "user", "content": prompt}],
                    options={"num_predict": 24, "temperature": 0.2},
                    stream=False,
                )
                async with aclosing(events) as stream:
                    async for event in stream:
                        if isinstance(event, Delta):
                            pieces.append(event.text)
                        elif isinstance(event, Finished):
                            finished = event
                title = services.clean_title("".join(pieces))
        except (LLMError, TimeoutError) as exc:
            error = str(exc) or "timed out"
            log.info("no title from %s: %s", self.reply.model, error)
        finally:
            await admission.charge(
                model=self.reply.model,
                connection=await self._connection_name(),
                prompt_tokens=finished.prompt_tokens if finished else estimate_tokens(prompt),
                completion_tokens=(
                    finished.completion_tokens if finished else estimate_tokens("".join(pieces))
                ),
                usage_source=finished.usage_source if finished else "estimated",
                status="ok" if finished else "error",
                error=error,
            )
        if not title:
            return  # the first words of the question stay the title
        conversation = await database_sync_to_async(_save_title)(self.conversation.pk, title)
        if conversation is not None:
            await self.layer.group_send(
                self.group,
                {"type": "conversation.title", "html": fragments.title_frame(conversation)},
            )


def next_interval(current: float, lag: float) -> float:
    """The pause before the next publishing round, given how late the last one woke up.

    Event-loop lag is the sign of a busy worker: each second of it adds LAG_GAIN seconds
    to the pause (so rounds get rarer and carry more tokens each, which costs less CPU per
    token), between BATCH_INTERVAL and MAX_BATCH_INTERVAL. It rises at once and falls
    back gradually, so one quiet round does not undo it.
    """
    target = BATCH_INTERVAL + LAG_GAIN * max(0.0, lag)
    if target < current:
        target = current - (current - target) * 0.25
    return min(MAX_BATCH_INTERVAL, max(BATCH_INTERVAL, target))


def _pubsub_channel(layer: object, group_name: str) -> str:
    """The Redis channel of `group_name` when the layer is pub/sub on our own Redis, else "".

    Then the snapshot script publishes the frame itself: one round trip per round for all
    of a worker's replies, instead of a snapshot write plus a `group_send` per reply.
    Sockets still receive it through the channel layer, on any worker.
    """
    if not isinstance(layer, RedisPubSubChannelLayer):
        return ""
    loop_layer = layer._get_layer()
    shards = loop_layer._shards
    if len(shards) != 1 or shards[0].host.get("address") != settings.REDIS_URL:
        return ""
    return loop_layer._get_group_channel_name(group_name)


class _Publisher:
    """One task per worker: publishes the updates of all its runners, round after round.

    A round renders each runner's new text and writes every snapshot, and publishes every
    frame, in one Redis round trip. What arrives meanwhile waits for the next round.
    """

    def __init__(self) -> None:
        self.dirty: dict[ReplyRunner, None] = {}  # an ordered set
        self.in_flight: frozenset[ReplyRunner] = frozenset()
        self.round_done: asyncio.Future[None] | None = None
        self.wake = asyncio.Event()
        self.interval = BATCH_INTERVAL
        self.task: asyncio.Task[None] | None = None

    def mark(self, runner: ReplyRunner) -> None:
        """`runner` has new text for the next round."""
        self.dirty[runner] = None
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def settle(self, runner: ReplyRunner) -> None:
        """Take `runner` out, once a round that carries its update is over."""
        self.dirty.pop(runner, None)
        while runner in self.in_flight and self.round_done is not None:
            await asyncio.shield(self.round_done)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.dirty:
                self.wake.clear()
                try:
                    async with asyncio.timeout(30):
                        await self.wake.wait()
                except TimeoutError:
                    if not self.dirty:
                        return  # idle: mark() starts a new task
            began = loop.time()
            await self._round()
            pause = max(0.0, self.interval - (loop.time() - began))
            slept = loop.time()
            await asyncio.sleep(pause)
            # How much later than asked the loop woke us: its lag.
            self.interval = next_interval(self.interval, loop.time() - slept - pause)

    async def _round(self) -> None:
        runners = list(self.dirty)
        self.dirty.clear()
        self.in_flight = frozenset(runners)
        self.round_done = asyncio.get_running_loop().create_future()
        try:
            taken: list[tuple[ReplyRunner, snapshots.Write]] = []
            for runner in runners:
                try:
                    write = runner.take_update()
                except Exception:
                    log.exception("could not render an update of reply %s", runner.reply.pk)
                    continue
                if write is not None:
                    taken.append((runner, write))
            errors = await snapshots.write_many([write for _, write in taken])
            for (runner, write), error in zip(taken, errors, strict=True):
                if error is not None:
                    # Its sockets will see a seq gap and re-sync from the snapshot, which
                    # gets this text with the runner's next write.
                    runner.not_saved(write, error)
                    continue
                runner.saved(write)
                if not write.channel:
                    try:
                        await runner.layer.group_send(runner.group, runner.frame)
                    except Exception:
                        log.exception("could not publish to %s", runner.group)
        finally:
            self.in_flight = frozenset()
            self.round_done.set_result(None)


_publishers: dict[int, _Publisher] = {}


def _publisher() -> _Publisher:
    loop = asyncio.get_running_loop()
    publisher = _publishers.get(id(loop))
    if publisher is None:
        publisher = _publishers[id(loop)] = _Publisher()
    return publisher


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
        checkpointing: asyncio.Task[None] | None = None
        while self.runners:
            await asyncio.sleep(CHECKPOINT_INTERVAL)
            runners = list(self.runners)
            try:
                await snapshots.beat_many([r.reply.pk for r in runners])
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            # A slow database must not hold up the heartbeat: other workers would take
            # these replies for dead.
            if checkpointing is None or checkpointing.done():
                checkpointing = asyncio.ensure_future(self._checkpoint(runners))

    @staticmethod
    async def _checkpoint(runners: list[ReplyRunner]) -> None:
        texts = {r: r.text for r in runners}
        changed = {r: text for r, text in texts.items() if len(text) != r.checkpointed_length}
        if not changed:
            return
        try:
            await database_sync_to_async(services.checkpoint_many)(
                [(r.reply.pk, text) for r, text in changed.items()]
            )
        except Exception:
            log.exception("checkpoint failed")
            return
        for r, text in changed.items():
            r.checkpointed_length = len(text)


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
