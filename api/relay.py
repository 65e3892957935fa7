"""One admitted generation: the engine's events, primed, relayed, and charged exactly once.

The first event is awaited before any byte goes out, so an engine error at the start still
gets its real status code. Whatever ends the relay (the last event, an error, the client
hanging up, which Django turns into a cancellation or a close of the iterator), `finally`
closes the engine stream (cancelling the upstream request) and charges the meter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from accounts.models import ApiKey
from api import ratelimits
from api.auth import check_model
from api.errors import from_refusal
from api.formats import WireFormat
from api.ndjson import Clock
from llm.client import Target, find_target
from llm.errors import LLMError, ModelNotFound, UpstreamInterrupted
from llm.events import Delta, Embedded, Event, Finished, ToolCall, ToolCalls
from llm.tokens import estimate_tokens, usage_or_estimate
from usage.models import Generation
from usage.services import Admission, Refused, admit

log = logging.getLogger(__name__)


class Relay:
    """The events of one generation, with what the meter needs to know about them."""

    def __init__(
        self,
        admission: Admission,
        events: AsyncIterator[Event],
        *,
        model: str,
        connection: str,
        prompt_estimate: int,
        clock: Clock,
    ) -> None:
        self.clock = clock
        self.admission = admission
        self.events = events
        self.model = model
        self.connection = connection
        self.prompt_estimate = prompt_estimate
        self.finished: Finished | None = None
        self.chars = 0
        self._first: Event | None = None
        self._closed = False
        self._admitted = time.perf_counter_ns()  # the relay is made right after the admission

    async def start(self) -> None:
        """Wait for the first event; an engine error raises here and is charged as failed."""
        try:
            self._first = await anext(self.events)
            self._note(self._first)
        except StopAsyncIteration:
            self._first = None
        except BaseException as exc:
            await self.close(exc)
            raise

    async def __aiter__(self) -> AsyncIterator[Event]:
        error: BaseException | None = None
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield first
            async for event in self.events:
                self._note(event)
                yield event
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self.close(error)

    def _note(self, event: Event) -> None:
        if isinstance(event, Delta):
            self.clock.mark_first()
            self.chars += len(event.text) + len(event.thinking)
        elif isinstance(event, ToolCalls):
            self.clock.mark_first()
        elif isinstance(event, Finished):
            self.finished = event

    async def close(self, error: BaseException | None) -> None:
        """Stop the engine stream and charge the generation (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.events.aclose()  # type: ignore[attr-defined]
        except Exception:  # a broken upstream must not keep the charge from happening
            log.debug("closing the engine stream failed", exc_info=True)
        usage = usage_or_estimate(
            self.finished, prompt_estimate=self.prompt_estimate, completion_chars=self.chars
        )
        await self.admission.charge(
            model=self.model,
            connection=self.connection,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            usage_source=usage.source,
            status=_status(self.finished, error),
            error=str(getattr(error, "message", "") or "") if error else "",
            ttft_ms=self._ttft_ms(),
        )

    def _ttft_ms(self) -> int | None:
        """From the admission to the first token (ms), as the ledger's duration is timed;
        None if no token came."""
        first = self.clock.first
        return None if first is None else max(first - self._admitted, 0) // 1_000_000


@dataclass
class Reply:
    """A whole generation, for a `"stream": false` request."""

    text: str
    thinking: str
    calls: list[ToolCall]
    logprobs: list[dict]  # of every token, when they were asked for


async def collect(relay: Relay, wire: WireFormat) -> Reply:
    """Run the relay to its end; an engine error becomes a non-2xx ApiError."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[ToolCall] = []
    logprobs: list[dict] = []
    try:
        async for event in relay:
            if isinstance(event, Delta):
                text.append(event.text)
                thinking.append(event.thinking)
                logprobs.extend(event.logprobs or ())
            elif isinstance(event, ToolCalls):
                calls.extend(event.calls)
    except LLMError as exc:
        raise wire.engine_error(exc, relay.model) from None
    return Reply("".join(text), "".join(thinking), calls, logprobs)


def _status(finished: Finished | None, error: BaseException | None) -> str:
    if finished is not None:
        return Generation.Status.OK  # the upstream finished, even if the client left last
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return Generation.Status.STOPPED  # the client went away
    if isinstance(error, UpstreamInterrupted):
        return Generation.Status.INTERRUPTED
    return Generation.Status.ERROR


def prompt_estimate(*texts: str) -> int:
    """Estimated prompt tokens, for a generation that ends before the upstream counts them."""
    return sum(estimate_tokens(text) for text in texts)


async def find_model(key: ApiKey, name: str, wire: WireFormat) -> Target:
    """Where a model this key may use is served; a 404 ApiError otherwise."""
    await check_model(key, name, wire)
    try:
        return await find_target(name)
    except ModelNotFound:
        raise wire.model_not_found(name) from None


async def _admit(key: ApiKey, prompt_estimate: int) -> Admission:
    """The meter's admission of an API call (its x-ratelimit-* headers noted for the
    response); a 429 ApiError when it refuses."""
    try:
        admission = await admit(
            key.user, door=Generation.Door.API, api_key=key, prompt_tokens=prompt_estimate
        )
    except Refused as exc:
        raise from_refusal(exc) from None
    ratelimits.note(admission.headroom)
    return admission


async def begin(
    key: ApiKey,
    target: Target,
    events: Callable[[], AsyncIterator[Event]],
    *,
    wire: WireFormat,
    prompt_estimate: int,
) -> Relay:
    """Admit the generation, start the engine and wait for its first event.

    Raises ApiError (429 from the meter, 4xx/5xx from the engine) before any byte is sent.
    """
    clock = Clock()
    admission = await _admit(key, prompt_estimate)
    relay = Relay(
        admission,
        events(),
        model=target.model,
        connection=target.connection.name,
        prompt_estimate=prompt_estimate,
        clock=clock,
    )
    try:
        await relay.start()
    except LLMError as exc:
        raise wire.engine_error(exc, target.model) from None
    return relay


async def embed_metered(
    key: ApiKey,
    target: Target,
    call: Callable[[], Awaitable[Embedded]],
    *,
    wire: WireFormat,
    prompt_estimate: int,
) -> Embedded:
    """Admit an embeddings call, run it and charge it (its input tokens) exactly once.

    Raises ApiError: 429 from the meter, the engine's errors in the door's shape.
    """
    admission = await _admit(key, prompt_estimate)
    result: Embedded | None = None
    error: BaseException | None = None
    try:
        result = await call()
        return result
    except BaseException as exc:
        error = exc
        if isinstance(exc, LLMError):
            raise wire.engine_error(exc, target.model) from None
        raise
    finally:
        await admission.charge(
            model=target.model,
            connection=target.connection.name,
            prompt_tokens=result.prompt_tokens if result else prompt_estimate,
            completion_tokens=0,
            usage_source=result.usage_source if result else "estimated",
            status=Generation.Status.OK if result else _status(None, error),
            error=str(getattr(error, "message", "") or "") if error else "",
        )
