"""Stopping a stream closes the upstream connection at once; many streams run together."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import pytest

import llm
from llm.events import Delta, Finished
from tests.llm.conftest import collect

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
MODELS = pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])


@MODELS
async def test_it_closes_the_upstream_when_the_caller_closes_the_iterator(both, mock, model):
    mock.script(tokens=100, delay=0.05)
    events = llm.stream_chat(model, HI)
    assert isinstance(await anext(events), Delta)
    stopped = time.monotonic()
    await events.aclose()
    record = await mock.wait_for_disconnect_async(within=1.0)
    assert record.cut_by_client
    assert record.client_closed_at - stopped < 1.0
    assert record.tokens_sent < 100


@MODELS
async def test_it_closes_the_upstream_when_the_task_is_cancelled(both, mock, model):
    mock.script(tokens=100, delay=0.05)
    received: list = []

    async def consume() -> None:
        async for event in llm.stream_chat(model, HI):
            received.append(event)

    task = asyncio.create_task(consume())
    while len(received) < 2:  # noqa: ASYNC110 (the test only watches the consumer's list)
        await asyncio.sleep(0.01)
    stopped = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await mock.wait_for_disconnect_async(within=1.0)
    assert record.client_closed_at - stopped < 1.0


async def test_it_closes_the_upstream_on_break_inside_aclosing(local, mock):
    mock.script(tokens=100, delay=0.05)
    async with aclosing(llm.stream_chat("llama3.2:latest", HI)) as events:
        async for _ in events:
            break
    stopped = time.monotonic()
    record = await mock.wait_for_disconnect_async(within=1.0)
    assert record.client_closed_at - stopped < 1.0


async def test_it_closes_the_upstream_while_waiting_for_the_first_byte(local, mock):
    mock.script(ttft=5)
    task = asyncio.create_task(collect(llm.stream_chat("llama3.2:latest", HI)))
    while not mock.streams:  # noqa: ASYNC110 (the mock's thread fills this list)
        await asyncio.sleep(0.01)
    stopped = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await mock.wait_for_disconnect_async(within=1.0)
    assert record.client_closed_at - stopped < 1.0


@MODELS
async def test_it_runs_more_streams_at_once_than_httpx_default_pool(both, mock, model):
    mock.script(tokens=4, delay=0.2)
    results = await asyncio.gather(*(collect(llm.stream_chat(model, HI)) for _ in range(150)))
    assert all(isinstance(events[-1], Finished) for events in results)
    # The mock saw them overlap: stream 101 did not wait for a pooled connection.
    assert most_at_once(mock.streams) > 100


def most_at_once(records: list) -> int:
    """The largest number of responses the mock was writing at the same moment."""
    moments = [(r.first_byte_at, 1) for r in records] + [(r.finished_at, -1) for r in records]
    running = peak = 0
    for _, step in sorted(moments):
        running += step
        peak = max(peak, running)
    return peak
