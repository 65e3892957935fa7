"""The Ollama-native door, checked on the wire against docs/api.md."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from accounts.models import User
from llm.models import Connection
from tests.api.wire import RFC3339, USER, ndjson_lines
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def chat(api: httpx.Client, **body: object) -> httpx.Response:
    return api.post("/api/chat", json={"model": "llama3.2:latest", "messages": USER, **body})


def test_chat_streams_ndjson_by_default_with_one_final_line(api: httpx.Client) -> None:
    response = chat(api)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = ndjson_lines(response.content)
    assert [line["done"] for line in lines] == [False] * 5 + [True]
    for line in lines:
        assert line["message"]["role"] == "assistant"
        assert isinstance(line["message"]["content"], str)
        assert line["model"] == "llama3.2:latest"
        assert RFC3339.fullmatch(line["created_at"])


def test_the_final_line_passes_the_upstream_metrics_through(api: httpx.Client) -> None:
    final = ndjson_lines(chat(api).content)[-1]
    assert final["done_reason"] == "stop"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert {name: final[name] for name in METRICS} == {
        "total_duration": 5_005_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": 10,
        "prompt_eval_duration": 2_000_000,
        "eval_count": 5,
        "eval_duration": 2_005_000,
    }


def test_metrics_are_integers_for_an_openai_upstream_too(api: httpx.Client) -> None:
    final = ndjson_lines(chat(api, model="gpt-4o-mini").content)[-1]
    assert all(isinstance(final[name], int) for name in METRICS)
    assert final["eval_count"] == 5 and final["prompt_eval_count"] == 10
    assert final["eval_duration"] > 0


def test_stream_false_is_one_object_with_the_whole_reply(api: httpx.Client) -> None:
    streamed = ndjson_lines(chat(api).content)
    response = chat(api, stream=False)
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["done"] is True and body["done_reason"] == "stop"
    assert body["message"]["content"] == "".join(line["message"]["content"] for line in streamed)


def test_generate_ends_with_an_empty_response_carrying_context(api: httpx.Client) -> None:
    payload = {"model": "llama3.2:latest", "prompt": "Why?"}
    lines = ndjson_lines(api.post("/api/generate", json=payload).content)
    assert lines[-1]["response"] == "" and lines[-1]["context"] == [1, 2, 3]
    assert "".join(line["response"] for line in lines) == "tok0 tok1 tok2 tok3 tok4"
    assert all("context" not in line for line in lines[:-1])
    whole = api.post("/api/generate", json={**payload, "stream": False}).json()
    assert whole["response"] == "tok0 tok1 tok2 tok3 tok4" and whole["context"] == [1, 2, 3]


def test_generate_in_raw_mode_has_no_context(api: httpx.Client) -> None:
    payload = {"model": "llama3.2:latest", "prompt": "Why?", "raw": True}
    assert "context" not in ndjson_lines(api.post("/api/generate", json=payload).content)[-1]
    whole = api.post("/api/generate", json={**payload, "stream": False}).json()
    assert "context" not in whole


def test_raw_mode_refuses_system_template_and_context(api: httpx.Client) -> None:
    for extra in ({"system": "s"}, {"template": "t"}, {"context": [1]}):
        response = api.post(
            "/api/generate", json={"model": "llama3.2:latest", "prompt": "p", "raw": True, **extra}
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": "raw mode does not support template, system, or context"
        }


def test_generate_on_an_openai_model_is_translated(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    payload = {"model": "gpt-4o-mini", "prompt": "Why?", "system": "Be brief", "stream": False}
    body = api.post("/api/generate", json=payload).json()
    assert body["response"] == "tok0 tok1 tok2 tok3 tok4"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief"}


def test_tool_calls_arrive_whole_with_object_arguments(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}]
    upstream.script(tokens=0, tool_calls=calls)
    for model in ("llama3.2:latest", "gpt-4o-mini"):  # the OpenAI one streams fragments
        lines = ndjson_lines(chat(api, model=model, tools=[_tool()]).content)
        with_calls = [line for line in lines if line["message"].get("tool_calls")]
        assert len(with_calls) == 1 and with_calls[0]["done"] is False
        function = with_calls[0]["message"]["tool_calls"][0]["function"]
        assert function["name"] == "get_weather"
        assert function["arguments"] == {"city": "Paris", "days": 3}
        assert lines[-1]["done_reason"] == "stop"


def _tool() -> dict:
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }


def test_request_fields_reach_an_ollama_upstream_as_supplied(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    image = base64.b64encode(b"\x89PNG fake").decode()
    fields = {
        "format": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "options": {"temperature": 0.2, "num_predict": 7, "stop": ["\n"], "custom": 1},
        "keep_alive": "10m",
        "think": "high",
        "tools": [_tool()],
    }
    messages = [{"role": "user", "content": "look", "images": [image]}]
    assert chat(api, messages=messages, **fields).status_code == 200
    sent = upstream.requests[-1].body
    assert sent["messages"][0]["images"] == [image]
    assert {name: sent[name] for name in fields} == fields
    assert chat(api, tools=[], keep_alive=30, think=True, format="json").status_code == 200
    sent = upstream.requests[-1].body
    assert (sent["tools"], sent["keep_alive"], sent["think"], sent["format"]) == (
        [],
        30,
        True,
        "json",
    )


def test_tags_lists_every_catalog_model(api: httpx.Client) -> None:
    models = api.get("/api/tags").json()["models"]
    assert [m["name"] for m in models] == [
        "llama3.2:latest",
        "qwen3:8b",
        "gpt-4o-mini",
        "gpt-4.1",
    ]
    for model in models:
        assert model["model"] == model["name"]
        assert RFC3339.fullmatch(model["modified_at"])
        assert isinstance(model["size"], int) and isinstance(model["digest"], str)
        assert isinstance(model["details"], dict)


def test_tags_is_an_empty_list_without_models(api: httpx.Client) -> None:
    Connection.objects.all().delete()
    assert api.get("/api/tags").json() == {"models": []}


def test_show_always_has_model_info_and_capabilities(api: httpx.Client) -> None:
    for model in ("llama3.2:latest", "gpt-4o-mini"):
        body = api.post("/api/show", json={"model": model}).json()
        assert "model_info" in body and isinstance(body["capabilities"], list)
    assert api.post("/api/show", json={"name": "qwen3:8b"}).status_code == 200


def test_show_passes_on_what_the_upstreams_show_said(api: httpx.Client) -> None:
    body = api.post("/api/show", json={"model": "qwen3:8b"}).json()
    assert body["model_info"] == {"general.architecture": "llama", "llama.context_length": 131072}
    assert body["capabilities"] == ["completion", "tools", "thinking"]
    # An OpenAI-compatible model: no family, no context length, nothing to show.
    body = api.post("/api/show", json={"model": "gpt-4o-mini"}).json()
    assert body["model_info"] == {} and body["capabilities"] == ["completion"]


def test_version_and_ps(api: httpx.Client) -> None:
    version = api.get("/api/version").json()["version"]
    assert len(version.split(".")) == 3
    assert api.get("/api/ps").json() == {"models": []}


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_embed_answers_one_vector_per_input(
    api: httpx.Client, upstream: MockUpstream, model: str
) -> None:
    response = api.post("/api/embed", json={"model": model, "input": "hello there"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["model"] == model
    assert response.json()["embeddings"] == [[1.1, 0.5, -0.25]]
    texts = ["a", "bbbbbbbbbbbbbbbbbbbb", "ccccc ccccc"]
    answer = api.post("/api/embed", json={"model": model, "input": texts}).json()
    assert answer["embeddings"] == [[0.1, 0.5, -0.25], [2.0, 0.5, -0.25], [1.1, 0.5, -0.25]]
    assert answer["prompt_eval_count"] == 4  # as the upstream counted them
    sent = upstream.requests[-1]
    if model.startswith("gpt"):
        assert sent.path == "/v1/embeddings" and sent.body["input"] == texts
    else:  # an Ollama upstream gets the fields as supplied
        assert sent.path == "/api/embed" and sent.body == {"model": model, "input": texts}


def test_embed_passes_ollama_fields_through(api: httpx.Client, upstream: MockUpstream) -> None:
    body = {
        "model": "llama3.2:latest",
        "input": "x",
        "truncate": False,
        "options": {"num_ctx": 512},
        "keep_alive": "5m",
        "dimensions": 3,
    }
    assert api.post("/api/embed", json=body).status_code == 200
    assert upstream.requests[-1].body == body


def test_embed_with_no_input_answers_no_vectors(api: httpx.Client, upstream: MockUpstream) -> None:
    answer = api.post("/api/embed", json={"model": "llama3.2:latest", "input": []}).json()
    assert answer == {"model": "llama3.2:latest", "embeddings": []}
    assert not [r for r in upstream.requests if "embed" in r.path]


@pytest.mark.parametrize("bad", [3, [1, 2], {"text": "x"}, ["ok", None]])
def test_embed_refuses_input_that_is_not_text(api: httpx.Client, bad: object) -> None:
    response = api.post("/api/embed", json={"model": "llama3.2:latest", "input": bad})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid input type"}


def test_embed_is_metered(api: httpx.Client, member: User) -> None:
    api.post("/api/embed", json={"model": "gpt-4o-mini", "input": ["one two", "three"]})
    row = Generation.objects.get(user=member)
    assert (row.door, row.model, row.status) == ("api", "gpt-4o-mini", "ok")
    assert (row.prompt_tokens, row.completion_tokens, row.usage_source) == (3, 0, "upstream")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", {"messages": USER}),
        ("/api/chat", {"messages": USER, "stream": False}),
        ("/api/generate", {"prompt": "x"}),
        ("/api/show", {}),
        ("/api/embed", {"input": "x"}),
    ],
)
def test_an_unknown_model_is_a_404_never_streamed(api: httpx.Client, path: str, body: dict) -> None:
    response = api.post(path, json={"model": "nope", **body})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "model 'nope' not found"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "missing request body"),
        (b"{not json", "invalid JSON in request body"),
        (b"[1]", "json: cannot unmarshal array into Go value of type api.ChatRequest"),
        (b'{"model": 3}', "json: cannot unmarshal number into Go struct field ChatRequest.model"),
        (b'{"model": "m", "messages": {}}', "cannot unmarshal object into Go struct field"),
        (b'{"model": "m", "stream": "yes"}', "ChatRequest.stream of type bool"),
        (b'{"model": "m", "messages": [{"role": 1}]}', "ChatRequest.messages.role"),
        (b'{"model": "m", "options": {"temperature": "hot"}}', 'option "temperature"'),
        (b'{"model": "m", "think": "hard"}', "invalid think value"),
        (b'{"model": "m", "format": "yaml"}', "invalid format"),
        (b'{"model": "m", "keep_alive": "soon"}', "invalid duration"),
        (b'{"model": ""}', "model is required"),
    ],
)
def test_malformed_bodies_are_400_with_a_message(
    api: httpx.Client, content: bytes, message: str
) -> None:
    response = api.post("/api/chat", content=content)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_an_empty_conversation_loads_or_unloads_the_model(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    loaded = chat(api, messages=[], stream=False).json()
    assert loaded["done_reason"] == "load" and loaded["done"] is True
    unloaded = ndjson_lines(chat(api, messages=[], keep_alive=0).content)
    assert unloaded[-1]["done_reason"] == "unload"
    assert not upstream.streams


def test_no_key_is_401_unauthorized(anonymous: httpx.Client) -> None:
    for method, path in (("POST", "/api/chat"), ("GET", "/api/tags"), ("GET", "/api/version")):
        response = anonymous.request(method, path, json={"model": "llama3.2:latest"})
        assert response.status_code == 401
        assert response.json() == {"error": "unauthorized"}


def test_an_upstream_failure_before_the_first_byte_is_a_502(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(status=500, error="out of memory")
    for stream in (True, False):
        response = chat(api, stream=stream)
        assert response.status_code == 502
        assert "out of memory" in response.json()["error"]
        assert "llama3.2:latest" in response.json()["error"]


def test_an_unreachable_upstream_is_a_502_naming_the_model(api: httpx.Client) -> None:
    api.get("/api/tags")  # the catalog is cached while the server is still up
    # update() skips save(), so the cached catalog keeps listing the model.
    Connection.objects.filter(name="local").update(base_url="http://127.0.0.1:9")
    response = chat(api)
    assert response.status_code == 502
    assert "llama3.2:latest" in response.json()["error"]


def test_a_failure_after_the_stream_started_ends_with_one_error_line(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(error_after=2, error="GPU fell off")
    response = chat(api)
    assert response.status_code == 200
    lines = ndjson_lines(response.content)
    assert [line["message"]["content"] for line in lines[:-1]] == ["tok0 ", "tok1 "]
    assert "GPU fell off" in lines[-1]["error"]
    assert not any(line.get("done") for line in lines)


def test_a_cut_connection_mid_stream_ends_with_an_error_line(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(cut_after=2)
    lines = ndjson_lines(chat(api, model="gpt-4o-mini").content)
    assert "error" in lines[-1] and not any(line.get("done") for line in lines)


def test_stream_false_never_gets_a_200_with_an_error(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(error_after=2)
    response = chat(api, stream=False)
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}


def test_upstream_heartbeats_do_not_reach_the_client(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    upstream.script(heartbeat=True)
    for model in ("llama3.2:latest", "gpt-4o-mini"):
        lines = ndjson_lines(chat(api, model=model).content)  # no blank lines
        assert lines[-1]["done"] is True


def test_thinking_is_sent_as_message_thinking(api: httpx.Client, upstream: MockUpstream) -> None:
    upstream.script(thinking="let me see", tokens=1)
    for model in ("qwen3:8b", "gpt-4o-mini"):
        lines = ndjson_lines(chat(api, model=model, think=True).content)
        assert "".join(line["message"].get("thinking", "") for line in lines) == "let me see"
        whole = chat(api, model=model, think=True, stream=False).json()
        assert whole["message"]["thinking"] == "let me see"


def test_wrong_method_is_405_in_the_protocol_shape(api: httpx.Client) -> None:
    response = api.get("/api/chat")
    assert response.status_code == 405
    assert "error" in response.json()
    assert json.loads(api.head("/api/tags").headers.get("content-length", "1")) >= 0


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_embed_with_a_model_that_cannot_embed_is_the_callers_400(
    api: httpx.Client, upstream: MockUpstream, model: str
) -> None:
    upstream.chat_only.add(model)
    response = api.post("/api/embed", json={"model": model, "input": "x"})
    assert response.status_code == 400  # not a 5xx that clients would retry
    assert "does not support embeddings" in response.json()["error"]


def test_embed_takes_at_most_2048_inputs(api: httpx.Client, upstream: MockUpstream) -> None:
    response = api.post("/api/embed", json={"model": "llama3.2:latest", "input": ["x"] * 2049})
    assert response.status_code == 400
    assert "2048" in response.json()["error"]
    assert not [r for r in upstream.requests if "embed" in r.path]
