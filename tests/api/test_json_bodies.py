"""Request bodies no JSON library downstream could handle: refused with a 400 in each
protocol's shape on every POST endpoint, or (lone surrogates) made encodable."""

from __future__ import annotations

import json

import httpx
import pytest

from api.bodies import MAX_DEPTH
from tests.api.wire import USER
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

# Each POST endpoint with a body it accepts; `{}` marks where a value is put.
POSTS = {
    "/api/chat": {"model": "llama3.2:latest", "messages": USER, "stream": False},
    "/api/generate": {"model": "llama3.2:latest", "prompt": "hi", "stream": False},
    "/api/embed": {"model": "llama3.2:latest", "input": "hi"},
    "/api/show": {"model": "llama3.2:latest"},
    "/v1/chat/completions": {"model": "llama3.2:latest", "messages": USER},
    "/v1/embeddings": {"model": "llama3.2:latest", "input": "hi"},
}


def assert_refused(response: httpx.Response, path: str, text: str) -> None:
    """A 400 in the door's error shape, whose message contains `text`."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    if path.startswith("/v1/"):
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        error = error["message"]
    assert isinstance(error, str) and text in error, error


def nested(depth: int) -> object:
    """A JSON value of arrays nested `depth` deep."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("path", POSTS)
def test_json_nested_a_hundred_thousand_deep_is_a_400(api: httpx.Client, path: str) -> None:
    body = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_refused(api.post(path, content=body), path, f"deeper than {MAX_DEPTH} levels")


@pytest.mark.parametrize("path", POSTS)
def test_json_nested_past_the_limit_is_a_400(api: httpx.Client, path: str) -> None:
    body = {**POSTS[path], "metadata": nested(MAX_DEPTH)}  # one level more, with the body
    assert_refused(api.post(path, json=body), path, f"deeper than {MAX_DEPTH} levels")


def test_json_nested_to_the_limit_reaches_the_model(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    schema = {"type": "array", "examples": nested(MAX_DEPTH - 2)}  # under the body and format
    response = api.post("/api/chat", json={**POSTS["/api/chat"], "format": schema})
    assert response.status_code == 200, response.text
    assert upstream.requests[-1].body["format"] == schema


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_are_a_400(api: httpx.Client, path: str, literal: bytes) -> None:
    body = json.dumps(POSTS[path]).encode()[:-1] + b', "temperature": ' + literal + b"}"
    assert_refused(api.post(path, content=body), path, literal.decode().lstrip("-"))


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/chat", "messages"), ("/v1/chat/completions", "messages")],
)
def test_lone_surrogates_reach_the_model_as_replacement_characters(
    api: httpx.Client, upstream: MockUpstream, path: str, field: str
) -> None:
    # A client that cut "😀" (\ud83d\ude00) in half, in a value and in a key.
    body = json.dumps(POSTS[path])[:-1] + ', "metadata": {"\\udc00": 1}}'
    body = body.replace('"content": "hi"', '"content": "cut \\ud83d here, whole \\ud83d\\ude00"')
    response = api.post(path, content=body.encode())
    assert response.status_code == 200, response.text
    sent = upstream.requests[-1].body
    assert sent[field][0]["content"] == "cut \ufffd here, whole \U0001f600"


def test_lone_surrogates_in_embedding_input_are_replaced(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    body = b'{"model": "llama3.2:latest", "input": ["half \\udbff"]}'
    for path in ("/api/embed", "/v1/embeddings"):
        response = api.post(path, content=body)
        assert response.status_code == 200, response.text
        assert upstream.requests[-1].body["input"] == ["half \ufffd"]


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ("[" * 100_000 + "]" * 100_000, f"deeper than {MAX_DEPTH} levels"),
        ('{"x": NaN}', "NaN"),
        ('{"x": 1e999}', "1e999"),
    ],
    ids=["deep", "nan", "huge"],
)
def test_tool_call_arguments_in_a_string_keep_the_same_rules(
    api: httpx.Client, arguments: str, text: str
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    response = api.post(
        "/v1/chat/completions", json={**POSTS["/v1/chat/completions"], "messages": messages}
    )
    assert_refused(response, "/v1/chat/completions", "invalid tool call arguments: ")
    assert text in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "messages[1].tool_calls"
