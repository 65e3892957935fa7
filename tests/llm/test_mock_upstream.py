"""The mock upstream satisfies the official SDKs, so other suites can trust it."""

from __future__ import annotations

import json
import socket
import struct
from urllib.parse import urlsplit

import ollama
import openai
import pytest

from tests.llm.conftest import API_KEY
from tests.mock_upstream import MockUpstream

HI = [{"role": "user", "content": "hi"}]


def test_it_satisfies_the_ollama_sdk(mock: MockUpstream):
    client = ollama.Client(host=mock.url)
    mock.script(tokens=3, tool_calls=[{"name": "f", "arguments": {"a": 1}}])
    chunks = list(client.chat("llama3.2:latest", HI, stream=True))
    assert "".join(c.message.content for c in chunks) == "tok0 tok1 tok2"
    assert chunks[-1].done and chunks[-1].eval_count == 3
    assert client.chat("llama3.2:latest", HI).message.tool_calls[0].function.arguments == {"a": 1}
    assert client.generate("qwen3:8b", "x").context == [1, 2, 3]
    assert [m.model for m in client.list().models] == ["llama3.2:latest", "qwen3:8b"]
    assert client.show("qwen3:8b").modelinfo is not None
    with pytest.raises(ollama.ResponseError, match="not found"):
        client.chat("nope", HI)


def test_it_raises_the_ollama_sdk_error_mid_stream(mock: MockUpstream):
    mock.script(tokens=5, error_after=2, error="boom")
    with pytest.raises(ollama.ResponseError, match="boom"):
        list(ollama.Client(host=mock.url).chat("llama3.2:latest", HI, stream=True))


def test_it_satisfies_the_openai_sdk(mock: MockUpstream):
    client = openai.OpenAI(base_url=mock.openai_url, api_key=API_KEY, max_retries=0)
    mock.script(tokens=2, thinking="hm", heartbeat=True)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1"
    assert chunks[-1].usage.completion_tokens == 2
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4.1"]


def test_it_streams_tool_calls_the_openai_sdk_can_assemble(mock: MockUpstream):
    client = openai.OpenAI(base_url=mock.openai_url, api_key=API_KEY, max_retries=0)
    mock.script(
        tokens=0,
        tool_calls=[{"name": "f", "arguments": {"city": "Paris"}}, {"name": "g", "arguments": {}}],
    )
    with client.chat.completions.stream(model="gpt-4.1", messages=HI) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("f", '{"city": "Paris"}'),
        ("g", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_it_makes_the_openai_sdk_raise_on_a_wrong_key_and_mid_stream_errors(mock: MockUpstream):
    wrong = openai.OpenAI(base_url=mock.openai_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="gpt-4o-mini", messages=HI)
    client = openai.OpenAI(base_url=mock.openai_url, api_key=API_KEY, max_retries=0)
    mock.script(tokens=5, error_after=1, error="exploded")
    with pytest.raises(openai.APIError, match="exploded"):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True))


def test_it_records_requests_and_a_client_that_hangs_up(mock: MockUpstream):
    import httpx

    mock.script(tokens=50, delay=0.02)
    with (
        httpx.Client() as client,
        client.stream(
            "POST", f"{mock.url}/api/chat", json={"model": "qwen3:8b", "messages": HI}
        ) as response,
    ):
        next(response.iter_lines())
    record = mock.wait_for_disconnect(within=1.0)
    assert record.cut_by_client and record.tokens_sent < 50
    assert mock.requests[-1].body == {"model": "qwen3:8b", "messages": HI}


def test_it_records_a_client_that_resets_the_connection(mock: MockUpstream):
    """An aborted socket (the engine's, when a reply is stopped) sends a reset, not a close:
    the mock still sees the client go, while it waits between two tokens."""
    mock.script(tokens=50, delay=0.5)
    address = urlsplit(mock.url)
    body = json.dumps({"model": "qwen3:8b", "messages": HI}).encode()
    with socket.create_connection((address.hostname, address.port)) as client:
        client.sendall(
            b"POST /api/chat HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        # Linger on with a zero timeout: close() sends RST at once.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    record = mock.wait_for_disconnect(within=0.4)
    assert record.cut_by_client and record.tokens_sent < 50
