"""The OpenAI-compatible door, checked on the wire against docs/api.md."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from accounts.models import User
from chatsite.redis import get_redis
from llm.models import Connection
from tests.api.wire import USER, sse_chunks, sse_events
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

ERROR_KEYS = {"message", "type", "param", "code"}


def complete(api: httpx.Client, **body: object) -> httpx.Response:
    return api.post(
        "/v1/chat/completions", json={"model": "llama3.2:latest", "messages": USER, **body}
    )


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer cs-wrong"}])
def test_a_missing_or_wrong_key_is_401_invalid_api_key(
    anonymous: httpx.Client, headers: dict
) -> None:
    response = anonymous.post("/v1/chat/completions", json={}, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
    assert error["param"] is None
    assert error["message"].startswith("Incorrect API key provided")


def test_header_name_and_scheme_match_in_any_case(anonymous: httpx.Client, member_key: str) -> None:
    response = anonymous.get("/v1/models", headers={"authorization": f"bearer {member_key}"})
    assert response.status_code == 200
    response = anonymous.get("/v1/models", headers={"AUTHORIZATION": f"BEARER {member_key}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"", None),
        (b"{bad", None),
        (b'{"messages": []}', "model"),
        (b'{"model": "llama3.2:latest", "messages": []}', "messages"),
        (b'{"model": "llama3.2:latest", "messages": "hi"}', "messages"),
        (b'{"model": "llama3.2:latest", "messages": [], "temperature": "hot"}', "temperature"),
        (b'{"model": "llama3.2:latest", "messages": [], "stream_options": []}', "stream_options"),
        (
            b'{"model": "llama3.2:latest", "messages": [{"role": "user", "content": "x"}],'
            b' "response_format": {"type": "json_schema", "json_schema": "x"}}',
            "response_format",
        ),
        (b'{"model": "x", "messages": [], "reasoning_effort": ["high"]}', "reasoning_effort"),
    ],
)
def test_malformed_bodies_are_400_with_all_four_keys(
    api: httpx.Client, content: bytes, param: str | None
) -> None:
    response = api.post("/v1/chat/completions", content=content)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("stream", [True, False])
def test_an_unknown_model_is_404_model_not_found_before_any_event(
    api: httpx.Client, stream: bool
) -> None:
    response = complete(api, model="nope", stream=stream)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == {
        "message": "The model `nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_rate_limits_are_429_rate_limit_exceeded_with_retry_after(
    api: httpx.Client, member: User
) -> None:
    get_redis().set(f"usage:rpm:{member.pk}:{int(time.time() // 60)}", 10_000, ex=60)
    response = complete(api)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(response.headers["retry-after"]) >= 1
    assert "x-should-retry" not in response.headers
    ollama = api.post("/api/chat", json={"model": "llama3.2:latest", "messages": USER})
    assert ollama.status_code == 429 and "error" in ollama.json()


def test_too_many_concurrent_generations_are_429(api: httpx.Client, member: User) -> None:
    # Four generations of this member running elsewhere (the member limit is 4).
    held = {f"elsewhere-{i}": time.time() + 60 for i in range(4)}
    get_redis().zadd(f"usage:running:{member.pk}", held)
    response = complete(api)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_every_response_carries_a_unique_request_id(
    api: httpx.Client, anonymous: httpx.Client
) -> None:
    responses = [
        complete(api),
        complete(api, stream=True),
        complete(api, model="nope"),
        anonymous.get("/v1/models"),
        api.get("/v1/models"),
        api.post("/api/chat", content=b""),
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(ids) and len(set(ids)) == len(ids)


def test_a_whole_completion_has_the_spec_fields_and_usage(api: httpx.Client) -> None:
    body = complete(api).json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "llama3.2:latest"
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "tok0 tok1 tok2 tok3 tok4"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (10, 5)
    assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"]


def test_a_stream_is_sse_with_one_role_one_finish_and_done(api: httpx.Client) -> None:
    response = complete(api, stream=True)
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in response.headers
    chunks = sse_chunks(response.content)
    assert len({(chunk["id"], chunk["created"]) for chunk in chunks}) == 1
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert finishes == [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "tok0 tok1 tok2 tok3 tok4"
    assert all("usage" not in chunk for chunk in chunks)


def test_include_usage_sends_a_usage_chunk_before_done(api: httpx.Client) -> None:
    response = complete(api, stream=True, stream_options={"include_usage": True})
    chunks = sse_chunks(response.content)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_streamed_tool_calls_carry_index_id_type_and_name(
    api: httpx.Client, upstream: MockUpstream, model: str
) -> None:
    upstream.script(
        tokens=0,
        tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Paris"}},
            {"name": "get_time", "arguments": {"zone": "CET"}},
        ],
    )
    chunks = sse_chunks(complete(api, model=model, stream=True, tools=[_tool()]).content)
    fragments = [t for c in chunks for t in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [f["index"] for f in fragments] == [0, 1]
    for fragment in fragments:
        assert fragment["id"] and fragment["type"] == "function" and fragment["function"]["name"]
    assert json.loads(fragments[0]["function"]["arguments"]) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    whole = complete(api, model=model, tools=[_tool()]).json()["choices"][0]
    assert whole["finish_reason"] == "tool_calls"
    assert json.loads(whole["message"]["tool_calls"][1]["function"]["arguments"]) == {"zone": "CET"}


def _tool() -> dict:
    return {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    }


@pytest.mark.parametrize(("done_reason", "expected"), [("stop", "stop"), ("length", "length")])
def test_finish_reasons_map_from_ollama(
    api: httpx.Client, upstream: MockUpstream, done_reason: str, expected: str
) -> None:
    upstream.script(done_reason=done_reason)
    assert complete(api).json()["choices"][0]["finish_reason"] == expected
    chunks = sse_chunks(complete(api, stream=True).content)
    assert chunks[-1]["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_an_error_mid_stream_is_one_error_event_and_no_done(
    api: httpx.Client, upstream: MockUpstream, model: str
) -> None:
    upstream.script(error_after=2, error="GPU fell off")
    response = complete(api, model=model, stream=True)
    assert response.status_code == 200
    events = sse_events(response.content)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert set(error) == ERROR_KEYS and "GPU fell off" in error["message"]
    assert error["code"]
    assert not any(json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1])


def test_a_failure_before_the_first_byte_is_a_502_even_when_streaming(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(status=503, error="busy")
    for stream in (True, False):
        response = complete(api, stream=stream)
        assert response.status_code == 502
        assert set(response.json()["error"]) == ERROR_KEYS


def test_upstream_client_errors_keep_their_status(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(status=400, error="context window exceeded")
    response = complete(api, model="gpt-4o-mini")
    assert response.status_code == 400
    assert "context window exceeded" in response.json()["error"]["message"]


def test_n_above_one_is_refused_with_param_n(api: httpx.Client) -> None:
    response = complete(api, n=2)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"
    assert complete(api, n=1).status_code == 200


def test_the_first_token_arrives_before_generation_ends(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(tokens=10, delay=0.1)
    started = time.monotonic()
    with api.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "llama3.2:latest", "messages": USER, "stream": True},
    ) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        first_at = time.monotonic() - started
        rest = b"".join(chunks)
    assert b'"role":"assistant"' in first
    assert first_at < 0.5 and rest.endswith(b"data: [DONE]\n\n")


def test_sse_pings_from_the_upstream_do_not_break_the_stream(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(heartbeat=True, crlf=True)
    chunks = sse_chunks(complete(api, model="gpt-4o-mini", stream=True).content)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).startswith("tok0")


def test_models_lists_the_catalog_in_openai_shape(api: httpx.Client) -> None:
    body = api.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "llama3.2:latest",
        "qwen3:8b",
        "gpt-4o-mini",
        "gpt-4.1",
    ]
    for model in body["data"]:
        assert model["object"] == "model" and isinstance(model["created"], int)
        assert isinstance(model["owned_by"], str)


def test_models_data_is_an_empty_array_without_models(api: httpx.Client) -> None:
    Connection.objects.all().delete()
    assert api.get("/v1/models").json() == {"object": "list", "data": []}


def test_a_model_id_may_contain_colons_and_slashes(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    Connection.objects.create(name="lab", base_url=upstream.url, prefix="lab/")
    body = api.get("/v1/models/lab/llama3.2:latest").json()
    assert body["id"] == "lab/llama3.2:latest" and body["object"] == "model"
    assert api.get("/v1/models/llama3.2:latest").json()["id"] == "llama3.2:latest"
    missing = api.get("/v1/models/lab/nope:1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_openai_requests_are_translated_for_an_ollama_upstream(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    image = base64.b64encode(b"\x89PNG fake").decode()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    complete(
        api,
        messages=messages,
        response_format={"type": "json_object"},
        max_tokens=12,
        stop="END",
    )
    sent = upstream.requests[-1].body
    assert sent["format"] == "json"
    assert sent["options"] == {"num_predict": 12, "stop": ["END"]}  # no forced temperature
    assert sent["messages"][0]["images"] == [image]
    assert sent["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert sent["messages"][2]["tool_name"] == "get_weather"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    complete(
        api,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        max_completion_tokens=5,
        stop=["a", "b"],
        temperature=0.3,
    )
    sent = upstream.requests[-1].body
    assert sent["format"] == schema
    assert sent["options"] == {"num_predict": 5, "stop": ["a", "b"], "temperature": 0.3}


def test_native_requests_are_translated_for_an_openai_upstream(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
    messages = [{"role": "user", "content": "look", "images": [image]}]
    api.post(
        "/api/chat",
        json={
            "model": "gpt-4o-mini",
            "messages": messages,
            "format": "json",
            "options": {"num_predict": 9, "stop": ["x"]},
        },
    )
    sent = upstream.requests[-1].body
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["max_tokens"] == 9 and sent["stop"] == ["x"]
    parts = sent["messages"][0]["content"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{image}"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "input"),
        ({"model": "gpt-4o-mini", "input": ""}, "input"),
        ({"model": "gpt-4o-mini", "input": [1, 2, 3]}, "input"),
        ({"model": "gpt-4o-mini", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "gpt-4o-mini", "input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x"}, "model"),
    ],
)
def test_embeddings_refuse_what_they_cannot_embed(
    api: httpx.Client, body: dict, param: str
) -> None:
    response = api.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_embeddings_of_an_unknown_model_are_a_404(api: httpx.Client) -> None:
    response = api.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_embeddings_answer_floats_in_input_order(api: httpx.Client, upstream: MockUpstream) -> None:
    response = api.post(
        "/v1/embeddings", json={"model": "gpt-4o-mini", "input": ["a", "ccc"], "dimensions": 3}
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "list" and answer["model"] == "gpt-4o-mini"
    assert [d["embedding"] for d in answer["data"]] == [[0.1, 0.5, -0.25], [0.3, 0.5, -0.25]]
    assert upstream.requests[-1].body["dimensions"] == 3


def test_embeddings_take_at_most_2048_inputs(api: httpx.Client) -> None:
    response = api.post("/v1/embeddings", json={"model": "gpt-4o-mini", "input": ["x"] * 2049})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_embeddings_of_a_model_that_cannot_embed_are_a_400(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.chat_only.add("llama3.2:latest")
    response = api.post("/v1/embeddings", json={"model": "llama3.2:latest", "input": "x"})
    assert response.status_code == 400
    assert "does not support embeddings" in response.json()["error"]["message"]
