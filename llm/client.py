"""The engine's entry points: `stream_chat`, `generate` and `embed`, for both front doors.

Messages and options are in Ollama's native shape; the catalog says which connection serves
the model and in which protocol, and the protocol client translates when it must.
Close the iterator (`aclose()`, `contextlib.aclosing`, or cancel the task) to stop: the
upstream response is closed at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from llm import catalog
from llm.catalog import CatalogModel
from llm.clients import ollama, openai
from llm.clients.base import UpstreamCall, run_call
from llm.errors import LLMError, ModelNotFound, UpstreamError
from llm.events import Embedded, Event
from llm.models import Connection


@dataclass
class Target:
    """Where a public model name is served."""

    model: str
    upstream_model: str
    connection: Connection
    entry: CatalogModel

    @property
    def protocol(self) -> ModuleType:
        """The protocol client module of the connection."""
        return ollama if self.connection.kind == Connection.Kind.OLLAMA else openai


async def find_target(model: str) -> Target:
    """The enabled connection serving `model`; raises ModelNotFound."""
    entry, connection = await catalog.resolve_connection(model)
    if not connection.allows(entry.upstream_name):
        raise ModelNotFound(model)
    return Target(model, entry.upstream_name, connection, entry)


def _upstream_call(
    build: Callable[..., UpstreamCall], target: Target, model: str, payload: Any, **fields: Any
) -> UpstreamCall:
    """`build` (a protocol's chat, generate or embed call) addressed to `target`."""
    connection = target.connection
    return build(
        connection.root_url, _headers(connection), model, target.upstream_model, payload, **fields
    )


def _headers(connection: Connection) -> dict[str, str]:
    try:
        return connection.auth_headers()
    except ValueError as exc:  # the key was encrypted under another SECRET_KEY
        raise LLMError(f"connection '{connection.name}': {exc}") from None


async def stream_chat(
    model: str,
    messages: list[dict],
    *,
    options: dict | None = None,
    tools: list | None = None,
    format: str | dict | None = None,
    think: bool | str | None = None,
    keep_alive: int | float | str | None = None,
    stream: bool = True,
    truncate: bool | None = None,
    shift: bool | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    openai_fields: dict | None = None,
    target: Target | None = None,
) -> AsyncIterator[Event]:
    """Chat with `model`: yields Delta, ToolCalls and one Finished (or raises LLMError).

    The arguments are a native request's fields; an OpenAI caller also passes its own
    fields (`llm.passthrough.openai_chat_fields`), which an OpenAI-compatible upstream gets
    as they are. A caller that has already looked the model up passes its `target` to skip
    doing it twice.
    """
    target = target or await find_target(model)
    call = _upstream_call(
        target.protocol.chat_call,
        target,
        model,
        messages,
        options=options,
        tools=tools,
        format=format,
        think=think,
        keep_alive=keep_alive,
        stream=stream,
        truncate=truncate,
        shift=shift,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        openai_fields=openai_fields,
    )
    async with aclosing(run_call(call)) as events:
        async for event in events:
            yield event


async def generate(
    model: str,
    prompt: str,
    *,
    suffix: str | None = None,
    system: str | None = None,
    template: str | None = None,
    context: list[int] | None = None,
    raw: bool | None = None,
    images: list[str] | None = None,
    options: dict | None = None,
    format: str | dict | None = None,
    think: bool | str | None = None,
    keep_alive: int | float | str | None = None,
    stream: bool = True,
    truncate: bool | None = None,
    shift: bool | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    target: Target | None = None,
) -> AsyncIterator[Event]:
    """Complete `prompt` with `model` (on an OpenAI upstream: a system + user chat)."""
    target = target or await find_target(model)
    call = _upstream_call(
        target.protocol.generate_call,
        target,
        model,
        prompt,
        suffix=suffix,
        system=system,
        template=template,
        context=context,
        raw=raw,
        images=images,
        options=options,
        format=format,
        think=think,
        keep_alive=keep_alive,
        stream=stream,
        truncate=truncate,
        shift=shift,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    async with aclosing(run_call(call)) as events:
        async for event in events:
            yield event


async def embed(
    model: str,
    input: str | list[str],
    *,
    truncate: bool | None = None,
    options: dict | None = None,
    keep_alive: int | float | str | None = None,
    dimensions: int | None = None,
    target: Target | None = None,
) -> Embedded:
    """The embedding vectors of `input` (one per string, in order) from `model`."""
    target = target or await find_target(model)
    call = _upstream_call(
        target.protocol.embed_call,
        target,
        model,
        input,
        truncate=truncate,
        options=options,
        keep_alive=keep_alive,
        dimensions=dimensions,
    )
    async with aclosing(run_call(call)) as events:
        async for event in events:
            return event  # type: ignore[return-value]
    raise UpstreamError(502, "the model server answered without embeddings")
