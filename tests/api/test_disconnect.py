"""A client that hangs up mid-stream cancels the upstream request, and is still charged."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.api.wire import USER
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for_generation(within: float = 3.0) -> Generation:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if row := Generation.objects.first():
            return row
        time.sleep(0.05)
    raise AssertionError("no generation was charged")


@pytest.mark.parametrize(
    ("path", "model", "extra"),
    [
        ("/api/chat", "llama3.2:latest", {}),
        ("/api/chat", "gpt-4o-mini", {}),
        ("/v1/chat/completions", "llama3.2:latest", {"stream": True}),
        ("/v1/chat/completions", "gpt-4o-mini", {"stream": True}),
    ],
)
def test_hanging_up_mid_stream_closes_the_upstream_request(
    api: httpx.Client, upstream: MockUpstream, path: str, model: str, extra: dict
) -> None:
    upstream.script(tokens=400, delay=0.02)
    body = {"model": model, "messages": USER, **extra}
    with api.stream("POST", path, json=body) as response:
        next(response.iter_bytes())
        hung_up_at = time.monotonic()
    record = upstream.wait_for_disconnect(within=3)
    assert record.cut_by_client and record.client_closed_at - hung_up_at < 2.0
    assert record.tokens_sent < 400
    generation = _wait_for_generation()
    assert generation.status == "stopped" and generation.usage_source == "estimated"
    assert generation.completion_tokens > 0


def test_hanging_up_before_the_first_token_also_cancels(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(ttft=5)
    with pytest.raises(httpx.ReadTimeout):
        api.post("/api/chat", json={"model": "llama3.2:latest", "messages": USER}, timeout=0.5)
    upstream.wait_for_disconnect(within=3)
    assert _wait_for_generation().status == "stopped"
