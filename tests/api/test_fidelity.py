"""What reaches the model server (docs/api.md), field by field: both doors x both kinds of
server, checked in what the recording mock received and in what the client got."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from llm.passthrough import OPENAI_CHAT_FIELDS, OPENAI_CHAT_OWNED, OPENAI_CHAT_REFUSED
from tests.api.wire import USER, ndjson_lines, sse_chunks
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

OLLAMA_MODEL = "llama3.2:latest"
OPENAI_MODEL = "gpt-4o-mini"
TEXT = "tok0 tok1 tok2 tok3 tok4"
SAME = "the fields as sent"
IGNORED = "nothing of the fields"
MISSING = object()
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


def tool(name: str) -> dict:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


WEATHER, TIME = tool("get_weather"), tool("get_time")
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}


@dataclass
class Row:
    """Fields of a request, and what each kind of server gets for them: SAME, IGNORED (the
    body of a request without them), a refusal (400 naming `refused`, nothing sent), or
    the values at dotted paths (`options.top_p`; MISSING for absent)."""

    id: str
    fields: dict
    ollama: Any = SAME
    openai: Any = SAME
    refused: str | None = None  # the param of the 400, for rows refused somewhere


def at(body: dict, path: str) -> Any:
    """The value at a dotted path (`options.stop`, `messages.0.content`); MISSING if none."""
    value: Any = body
    for name in path.split("."):
        if isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        elif isinstance(value, dict) and name in value:
            value = value[name]
        else:
            return MISSING
    return value


def generations(upstream: MockUpstream) -> list:
    """The generation requests the mock received (the catalog's are not)."""
    paths = ("/api/chat", "/api/generate", "/v1/chat/completions")
    return [request for request in upstream.requests if request.path in paths]


def check_sent(sent: dict, row: Row, expected: Any, baseline: dict) -> None:
    """`sent` (what the mock received) holds what `expected` says for `row`."""
    if expected == SAME:
        assert {name: sent.get(name, MISSING) for name in row.fields} == row.fields
    elif expected == IGNORED:
        assert sent == baseline
    else:
        assert {path: at(sent, path) for path in expected} == expected


# -- /v1/chat/completions --------------------------------------------------------------------

V1_ROWS = [
    Row("temperature", {"temperature": 0.3}, {"options.temperature": 0.3}),
    Row("top_p", {"top_p": 0.5}, {"options.top_p": 0.5}),
    Row("seed", {"seed": 42}, {"options.seed": 42}),
    Row("presence_penalty", {"presence_penalty": 0.5}, {"options.presence_penalty": 0.5}),
    Row("frequency_penalty", {"frequency_penalty": -0.5}, {"options.frequency_penalty": -0.5}),
    Row("max_tokens", {"max_tokens": 7}, {"options.num_predict": 7}),
    Row(
        "max_completion_tokens",
        {"max_completion_tokens": 8},
        {"options.num_predict": 8},
        {"max_completion_tokens": 8, "max_tokens": MISSING},
    ),
    Row("stop list", {"stop": ["a", "b"]}, {"options.stop": ["a", "b"]}),
    Row("stop string", {"stop": "END"}, {"options.stop": ["END"]}),
    Row(
        "logprobs",
        {"logprobs": True, "top_logprobs": 2},
        {"logprobs": True, "top_logprobs": 2, "options": MISSING},
    ),
    Row(
        "response_format json_schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "person", "strict": True, "schema": SCHEMA},
            }
        },
        {"format": SCHEMA},
    ),
    Row(
        "response_format json_object",
        {"response_format": {"type": "json_object"}},
        {"format": "json"},
    ),
    Row("response_format text", {"response_format": {"type": "text"}}, IGNORED),
    Row("tools", {"tools": [WEATHER, TIME]}, {"tools": [WEATHER, TIME]}),
    Row(
        "tool_choice function",
        {
            "tools": [WEATHER, TIME],
            "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        },
        {"tools": [TIME]},
    ),
    Row(
        "tool_choice allowed_tools",
        {
            "tools": [WEATHER, TIME],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
                },
            },
        },
        {"tools": [WEATHER]},
    ),
    Row(
        "tool_choice required",
        {"tools": [WEATHER, TIME], "tool_choice": "required"},
        {"tools": [WEATHER, TIME]},
    ),
    Row(
        "tool_choice auto",
        {"tools": [WEATHER, TIME], "tool_choice": "auto"},
        {"tools": [WEATHER, TIME]},
    ),
    Row("tool_choice none", {"tools": [WEATHER, TIME], "tool_choice": "none"}, IGNORED),
    Row(
        "parallel_tool_calls",
        {"tools": [WEATHER], "parallel_tool_calls": False},
        {"tools": [WEATHER], "parallel_tool_calls": MISSING},
    ),
    Row("reasoning_effort", {"reasoning_effort": "high"}, {"think": "high"}),
    Row("reasoning_effort none", {"reasoning_effort": "none"}, {"think": False}),
    Row("reasoning_effort minimal", {"reasoning_effort": "minimal"}, {"think": "low"}),
    Row("reasoning_effort xhigh", {"reasoning_effort": "xhigh"}, {"think": "max"}),
    Row(
        "reasoning.effort",
        {"reasoning": {"effort": "low"}},
        {"think": "low"},
        {"reasoning_effort": "low", "reasoning": MISSING},
    ),
    Row(
        "messages",
        {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {
                    "role": "user",
                    "name": "ada",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                        },
                    ],
                },
                {"role": "assistant", "content": "ok", "reasoning_content": "thought"},
                {"role": "user", "content": "and?"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "look", "images": [PNG]},
                {"role": "assistant", "content": "ok", "thinking": "thought"},
                {"role": "user", "content": "and?"},
            ]
        },
    ),
    Row(
        "message roles in any case",
        {"messages": [{"role": "User", "content": "hi"}]},
        {"messages": USER},
        {"messages": USER},
    ),
    Row("logit_bias", {"logit_bias": {"50256": -100}}, "refused", refused="logit_bias"),
    Row("logit_bias empty", {"logit_bias": {}}, IGNORED),
    Row("web_search_options", {"web_search_options": {}}, "refused", refused="web_search_options"),
    Row(
        "moderation",
        {"moderation": {"model": "omni-moderation-latest"}},
        "refused",
        refused="moderation",
    ),
    Row("user", {"user": "u-42"}, IGNORED),
    Row("safety_identifier", {"safety_identifier": "s-42"}, IGNORED),
    Row("metadata and store", {"metadata": {"job": "7"}, "store": True}, IGNORED),
    Row("verbosity", {"verbosity": "low"}, IGNORED),
    Row("prediction", {"prediction": {"type": "content", "content": "tok0"}}, IGNORED),
    Row("prompt_cache_key", {"prompt_cache_key": "k"}, IGNORED),
    Row("prompt_cache_options", {"prompt_cache_options": {"ttl": "30m"}}, IGNORED),
    Row("prompt_cache_retention", {"prompt_cache_retention": "24h"}, IGNORED),
    Row("service_tier", {"service_tier": "priority"}, IGNORED, {"service_tier": MISSING}),
    Row("n", {"n": 1}, IGNORED, {"n": MISSING}),
    Row("functions", {"functions": [WEATHER["function"]]}, "refused", "refused", "functions"),
    Row("function_call", {"function_call": "auto"}, "refused", "refused", "function_call"),
    Row("audio", {"audio": {"voice": "alloy", "format": "mp3"}}, "refused", "refused", "audio"),
    Row("modalities audio", {"modalities": ["text", "audio"]}, "refused", "refused", "modalities"),
    Row("modalities text", {"modalities": ["text"]}, IGNORED),
    Row(
        "tool_choice naming no tool",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "refused",
        "refused",
        "tool_choice",
    ),
    Row(
        "tool_choice naming nothing",
        {"tools": [WEATHER], "tool_choice": {"type": "function"}},
        "refused",
        "refused",
        "tool_choice",
    ),
    Row(
        "tool_choice of an unknown type",
        {"tools": [WEATHER], "tool_choice": {"type": "mcp"}},
        "refused",
        "refused",
        "tool_choice",
    ),
    Row(
        "tool_choice without tools",
        {"tool_choice": "required"},
        "refused",
        "refused",
        "tool_choice",
    ),
]


def v1(api: httpx.Client, model: str, row: Row) -> httpx.Response:
    body = {"model": model, "messages": USER, **row.fields}
    return api.post("/v1/chat/completions", json=body)


def check_v1_answer(
    response: httpx.Response, row: Row, expected: Any, upstream: MockUpstream
) -> None:
    if expected == "refused":
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == row.refused
        assert not generations(upstream)  # refused before any model runs
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == TEXT


@pytest.mark.parametrize("row", V1_ROWS, ids=lambda row: row.id)
def test_v1_fields_reach_an_openai_server_as_sent(
    api: httpx.Client, upstream: MockUpstream, row: Row
) -> None:
    response = v1(api, OPENAI_MODEL, row)
    check_v1_answer(response, row, row.openai, upstream)
    if row.openai != "refused":
        baseline = {"model": OPENAI_MODEL, "messages": USER, "stream": False}
        check_sent(upstream.requests[-1].body, row, row.openai, baseline)


@pytest.mark.parametrize("row", V1_ROWS, ids=lambda row: row.id)
def test_v1_fields_reach_an_ollama_server_translated(
    api: httpx.Client, upstream: MockUpstream, row: Row
) -> None:
    response = v1(api, OLLAMA_MODEL, row)
    check_v1_answer(response, row, row.ollama, upstream)
    if row.ollama != "refused":
        baseline = {"model": OLLAMA_MODEL, "messages": USER, "stream": False}
        check_sent(upstream.requests[-1].body, row, row.ollama, baseline)


def test_every_chat_completions_field_has_a_rule_and_a_row() -> None:
    """The allowlist, the owned and the refused fields cover OpenAI's whole request (a new
    field in the SDK needs a decision), and the table tries each of them."""
    spec = (
        CompletionCreateParamsBase.__required_keys__ | CompletionCreateParamsBase.__optional_keys__
    )
    ruled = OPENAI_CHAT_FIELDS | OPENAI_CHAT_OWNED | set(OPENAI_CHAT_REFUSED)
    assert spec - {"stream"} == ruled - {"stream"}
    tried = {name for row in V1_ROWS for name in row.fields}
    assert ruled - {"model", "stream", "stream_options"} <= tried


def test_the_site_owns_stream_options_upstream(api: httpx.Client, upstream: MockUpstream) -> None:
    body = {
        "model": OPENAI_MODEL,
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": False, "include_obfuscation": False},
    }
    chunks = sse_chunks(api.post("/v1/chat/completions", json=body).content)
    sent = upstream.requests[-1].body
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})
    assert all("usage" not in chunk for chunk in chunks)  # the caller asked for none


# -- /api/chat and /api/generate --------------------------------------------------------------

API_CHAT_ROWS = [
    Row("options.temperature", {"options": {"temperature": 0.2}}, openai={"temperature": 0.2}),
    Row("options.top_p", {"options": {"top_p": 0.9}}, openai={"top_p": 0.9}),
    Row("options.seed", {"options": {"seed": 7}}, openai={"seed": 7}),
    Row(
        "options.presence_penalty",
        {"options": {"presence_penalty": 1}},
        openai={"presence_penalty": 1},
    ),
    Row(
        "options.frequency_penalty",
        {"options": {"frequency_penalty": 1}},
        openai={"frequency_penalty": 1},
    ),
    Row("options.stop", {"options": {"stop": ["\n"]}}, openai={"stop": ["\n"]}),
    Row("options.num_predict", {"options": {"num_predict": 9}}, openai={"max_tokens": 9}),
    Row("options.num_predict -1", {"options": {"num_predict": -1}}, openai=IGNORED),
    Row(
        "options of Ollama's runner",
        {
            "options": {
                "top_k": 5,
                "min_p": 0.1,
                "num_ctx": 8192,
                "repeat_penalty": 1.1,
                "custom": 1,
            }
        },
        openai=IGNORED,
    ),
    Row("format json", {"format": "json"}, openai={"response_format": {"type": "json_object"}}),
    Row(
        "format schema",
        {"format": SCHEMA},
        openai={
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": SCHEMA},
            }
        },
    ),
    Row("keep_alive", {"keep_alive": "10m"}, openai=IGNORED),
    Row("keep_alive seconds", {"keep_alive": 30}, openai=IGNORED),
    Row("think level", {"think": "high"}, openai={"reasoning_effort": "high"}),
    Row("think max", {"think": "max"}, openai={"reasoning_effort": "high"}),
    Row("think true", {"think": True}, openai=IGNORED),
    Row("think false", {"think": False}, openai=IGNORED),
    Row("tools", {"tools": [WEATHER, TIME]}, openai={"tools": [WEATHER, TIME]}),
    Row("truncate", {"truncate": False}, openai=IGNORED),
    Row("shift", {"shift": False}, openai=IGNORED),
    Row(
        "logprobs",
        {"logprobs": True, "top_logprobs": 3},
        openai={"logprobs": True, "top_logprobs": 3},
    ),
    Row(
        "messages",
        {"messages": [{"role": "USER", "content": "look", "images": [PNG]}]},
        {"messages": [{"role": "user", "content": "look", "images": [PNG]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ]
        },
    ),
]
API_GENERATE_ROWS = [
    Row(
        "options",
        {"options": {"temperature": 0.2, "num_predict": 9}},
        openai={"temperature": 0.2, "max_tokens": 9},
    ),
    Row("format", {"format": "json"}, openai={"response_format": {"type": "json_object"}}),
    Row("think", {"think": "low"}, openai={"reasoning_effort": "low"}),
    Row("keep_alive", {"keep_alive": "5m"}, openai=IGNORED),
    Row("truncate and shift", {"truncate": True, "shift": True}, openai=IGNORED),
    Row(
        "logprobs",
        {"logprobs": True, "top_logprobs": 1},
        openai={"logprobs": True, "top_logprobs": 1},
    ),
    Row(
        "system",
        {"system": "Be brief."},
        openai={
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Why?"},
            ]
        },
    ),
    Row(
        "images",
        {"images": [PNG]},
        openai={
            "messages.0.content": [
                {"type": "text", "text": "Why?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ]
        },
    ),
    Row("template", {"template": "{{ .Prompt }}"}, openai=IGNORED),
    Row("context", {"context": [1, 2, 3]}, openai=IGNORED),
    Row("raw", {"raw": True}, openai=IGNORED),
    Row("raw false", {"raw": False}, openai=IGNORED),
    Row("suffix", {"suffix": "return x"}, openai="refused", refused="suffix"),
]


def native(api: httpx.Client, path: str, model: str, row: Row) -> httpx.Response:
    base = {"messages": USER} if path == "/api/chat" else {"prompt": "Why?"}
    return api.post(path, json={"model": model, **base, "stream": False, **row.fields})


def check_native_answer(
    response: httpx.Response, path: str, expected: Any, upstream: MockUpstream
) -> None:
    if expected == "refused":
        assert response.status_code == 400, response.text
        assert response.json()["error"]
        assert not generations(upstream)
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["done"] is True
    assert (answer["message"]["content"] if path == "/api/chat" else answer["response"]) == TEXT


NATIVE_ROWS = [("/api/chat", row) for row in API_CHAT_ROWS] + [
    ("/api/generate", row) for row in API_GENERATE_ROWS
]
NATIVE_IDS = [f"{path[5:]}-{row.id}" for path, row in NATIVE_ROWS]


@pytest.mark.parametrize(("path", "row"), NATIVE_ROWS, ids=NATIVE_IDS)
def test_api_fields_reach_an_ollama_server_as_sent(
    api: httpx.Client, upstream: MockUpstream, path: str, row: Row
) -> None:
    response = native(api, path, OLLAMA_MODEL, row)
    check_native_answer(response, path, row.ollama, upstream)
    check_sent(upstream.requests[-1].body, row, row.ollama, {})


@pytest.mark.parametrize(("path", "row"), NATIVE_ROWS, ids=NATIVE_IDS)
def test_api_fields_reach_an_openai_server_translated(
    api: httpx.Client, upstream: MockUpstream, path: str, row: Row
) -> None:
    response = native(api, path, OPENAI_MODEL, row)
    check_native_answer(response, path, row.openai, upstream)
    if row.openai != "refused":
        messages = USER if path == "/api/chat" else [{"role": "user", "content": "Why?"}]
        baseline = {"model": OPENAI_MODEL, "messages": messages, "stream": False}
        check_sent(upstream.requests[-1].body, row, row.openai, baseline)


def test_every_ollama_field_has_a_row() -> None:
    chat = {
        "options",
        "format",
        "keep_alive",
        "think",
        "tools",
        "truncate",
        "shift",
        "logprobs",
        "top_logprobs",
        "messages",
    }
    generate = chat - {"tools", "messages"} | {
        "system",
        "images",
        "template",
        "context",
        "raw",
        "suffix",
    }
    assert {name for row in API_CHAT_ROWS for name in row.fields} == chat
    assert {name for row in API_GENERATE_ROWS for name in row.fields} == generate


# -- what comes back ------------------------------------------------------------------------


def expected_logprobs(top: int) -> list[dict]:
    """The logprob entries the mock gives for the default five tokens."""
    tokens = [f"tok{i} " for i in range(4)] + ["tok4"]
    return [
        {
            "token": token,
            "logprob": -0.25 * (i + 1),
            "bytes": list(token.encode()),
            "top_logprobs": [
                {"token": token, "logprob": -0.25 * (i + 1), "bytes": list(token.encode())},
                *(
                    {
                        "token": f"alt{n}",
                        "logprob": -0.25 * (i + 1) - n,
                        "bytes": list(f"alt{n}".encode()),
                    }
                    for n in range(1, top)
                ),
            ][:top],
        }
        for i, token in enumerate(tokens)
    ]


@pytest.mark.parametrize("model", [OLLAMA_MODEL, OPENAI_MODEL])
def test_v1_answers_the_servers_logprobs(api: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": USER, "logprobs": True, "top_logprobs": 2}
    whole = api.post("/v1/chat/completions", json=body).json()["choices"][0]["logprobs"]
    assert whole == {"content": expected_logprobs(2), "refusal": None}
    chunks = sse_chunks(api.post("/v1/chat/completions", json={**body, "stream": True}).content)
    streamed = [
        entry
        for chunk in chunks
        for entry in (chunk["choices"][0]["logprobs"] or {}).get("content", [])
    ]
    assert streamed == expected_logprobs(2)
    assert all(
        chunk["choices"][0]["logprobs"] is None
        for chunk in chunks
        if not chunk["choices"][0]["delta"].get("content")
    )


@pytest.mark.parametrize("model", [OLLAMA_MODEL, OPENAI_MODEL])
def test_v1_answers_logprobs_null_unless_asked(api: httpx.Client, model: str) -> None:
    body = {"model": model, "messages": USER}
    assert api.post("/v1/chat/completions", json=body).json()["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
@pytest.mark.parametrize("model", [OLLAMA_MODEL, OPENAI_MODEL])
def test_api_answers_the_servers_logprobs(api: httpx.Client, model: str, path: str) -> None:
    base = {"messages": USER} if path == "/api/chat" else {"prompt": "Why?"}
    body = {"model": model, **base, "logprobs": True, "top_logprobs": 3}
    lines = ndjson_lines(api.post(path, json=body).content)
    assert [entry for line in lines for entry in line.get("logprobs", [])] == expected_logprobs(3)
    whole = api.post(path, json={**body, "stream": False}).json()
    assert whole["logprobs"] == expected_logprobs(3)


@pytest.mark.parametrize(
    ("model", "field"),
    [(OLLAMA_MODEL, "reasoning"), (OPENAI_MODEL, "reasoning_content"), (OPENAI_MODEL, "reasoning")],
)
def test_v1_answers_reasoning_as_reasoning_content(
    api: httpx.Client, upstream: MockUpstream, model: str, field: str
) -> None:
    """From Ollama's `thinking`, or either name an OpenAI-compatible server uses."""
    upstream.script(thinking="let me see", tokens=1, reasoning_field=field)
    body = {"model": model, "messages": USER, "reasoning_effort": "low"}
    message = api.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert (message["reasoning_content"], message["reasoning"]) == ("let me see", "let me see")
    chunks = sse_chunks(api.post("/v1/chat/completions", json={**body, "stream": True}).content)
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert "".join(delta.get("reasoning_content", "") for delta in deltas) == "let me see"
    assert "".join(delta.get("reasoning", "") for delta in deltas) == "let me see"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_api_answers_an_openai_servers_reasoning_as_thinking(
    api: httpx.Client, upstream: MockUpstream, field: str
) -> None:
    upstream.script(thinking="let me see", tokens=1, reasoning_field=field)
    body = {"model": OPENAI_MODEL, "messages": USER, "think": "low"}
    lines = ndjson_lines(api.post("/api/chat", json=body).content)
    assert "".join(line["message"].get("thinking", "") for line in lines) == "let me see"
    whole = api.post("/api/chat", json={**body, "stream": False}).json()
    assert whole["message"]["thinking"] == "let me see"
    generated = api.post(
        "/api/generate", json={"model": OPENAI_MODEL, "prompt": "Why?", "stream": False}
    )
    assert generated.json()["thinking"] == "let me see"
