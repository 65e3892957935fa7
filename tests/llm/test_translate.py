"""Request translation both ways, and the end-to-end trip of an OpenAI body to Ollama."""

from __future__ import annotations

import json

import pytest

import llm
from llm.errors import InvalidRequest
from llm.translate import native_to_openai_request, openai_request_to_native
from tests.llm.conftest import collect

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg=="
)


def body(**fields: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_it_maps_the_sampling_options_and_leaves_absent_ones_absent():
    native = openai_request_to_native(
        body(temperature=0.3, seed=1, frequency_penalty=0.5, presence_penalty=-1, max_tokens=9)
    )
    assert native.options == {
        "temperature": 0.3,
        "seed": 1,
        "frequency_penalty": 0.5,
        "presence_penalty": -1,
        "num_predict": 9,
    }
    assert openai_request_to_native(body()).options == {}


def test_it_prefers_max_completion_tokens():
    native = openai_request_to_native(body(max_tokens=5, max_completion_tokens=7))
    assert native.options["num_predict"] == 7


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_it_turns_stop_into_a_list(stop, expected):
    assert openai_request_to_native(body(stop=stop)).options["stop"] == expected


def test_it_turns_data_uri_images_into_raw_base64():
    content = [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "text", "text": "this?"},
    ]
    native = openai_request_to_native(body(messages=[{"role": "user", "content": content}]))
    assert native.messages == [{"role": "user", "content": "what is\nthis?", "images": [PNG]}]


def test_it_refuses_http_image_urls():
    content = [{"type": "image_url", "image_url": "https://example.com/cat.png"}]
    with pytest.raises(InvalidRequest, match="image URLs are not currently supported"):
        openai_request_to_native(body(messages=[{"role": "user", "content": content}]))


def test_it_refuses_bad_base64_images():
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]
    with pytest.raises(InvalidRequest, match="invalid image input"):
        openai_request_to_native(body(messages=[{"role": "user", "content": content}]))


def test_it_parses_tool_call_arguments_and_names_tool_results():
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    native = openai_request_to_native(body(messages=messages))
    assert native.messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_1",
                "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    }
    assert native.messages[2] == {
        "role": "tool",
        "content": "sunny",
        "tool_name": "get_weather",
        "tool_call_id": "call_1",
    }


def test_it_refuses_tool_call_arguments_that_are_not_json():
    messages = [
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}},
            ],
        }
    ]
    with pytest.raises(InvalidRequest, match="invalid tool call arguments"):
        openai_request_to_native(body(messages=messages))


def test_it_maps_response_formats():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    as_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert openai_request_to_native(body(response_format={"type": "json_object"})).format == "json"
    assert openai_request_to_native(body(response_format=as_schema)).format == schema
    assert openai_request_to_native(body(response_format={"type": "text"})).format is None
    with pytest.raises(InvalidRequest) as raised:
        openai_request_to_native(body(response_format={"type": "yaml"}))
    assert raised.value.param == "response_format"


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("medium", "medium"), ("high", "high"), ("xhigh", "max")],
)
def test_it_maps_reasoning_effort_to_think(effort, think):
    assert openai_request_to_native(body(reasoning_effort=effort)).think == think


def test_it_refuses_an_unknown_reasoning_effort():
    with pytest.raises(InvalidRequest):
        openai_request_to_native(body(reasoning_effort="extreme"))


def test_it_maps_developer_to_system_and_reasoning_to_thinking():
    messages = [
        {"role": "developer", "content": "rules"},
        {"role": "assistant", "content": "ok", "reasoning": "because"},
    ]
    native = openai_request_to_native(body(messages=messages))
    assert native.messages == [
        {"role": "system", "content": "rules"},
        {"role": "assistant", "content": "ok", "thinking": "because"},
    ]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"n": 2}, "n"),
        ({"stop": 5}, "stop"),
    ],
)
def test_it_names_the_bad_parameter(fields, param):
    with pytest.raises(InvalidRequest) as raised:
        openai_request_to_native(body(**fields))
    assert raised.value.param == param


def test_it_keeps_stream_and_usage_wishes():
    native = openai_request_to_native(body(stream=True, stream_options={"include_usage": True}))
    assert (native.stream, native.include_usage) == (True, True)
    assert openai_request_to_native(body()).stream is False


def test_it_builds_an_openai_body_from_a_native_request():
    messages = [
        {"role": "user", "content": "look", "images": [PNG]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "zoom", "arguments": {"level": 2}}},
                {"function": {"name": "zoom", "arguments": {"level": 3}}},
            ],
        },
        {"role": "tool", "content": "done 2", "tool_name": "zoom"},
        {"role": "tool", "content": "done 3", "tool_name": "zoom"},
    ]
    schema = {"type": "object"}
    out = native_to_openai_request(
        "gpt",
        messages,
        options={"num_predict": 10, "top_p": 0.9, "num_ctx": 8},
        tools=[],
        format=schema,
        think="max",
    )
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
    }
    calls = out["messages"][1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"level": 2}, {"level": 3}]
    assert out["messages"][1]["content"] is None
    # Each result answers the call it follows, in order.
    assert [m["tool_call_id"] for m in out["messages"][2:]] == [c["id"] for c in calls]
    assert (out["max_tokens"], out["top_p"]) == (10, 0.9)
    assert "num_ctx" not in out and "tools" not in out
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }
    assert out["reasoning_effort"] == "high"


def test_it_asks_for_no_usage_chunk_when_not_streaming():
    out = native_to_openai_request("gpt", [{"role": "user", "content": "x"}], stream=False)
    assert "stream_options" not in out


def test_it_refuses_a_format_that_is_neither_json_nor_a_schema():
    with pytest.raises(InvalidRequest, match="invalid format"):
        native_to_openai_request("gpt", [], format="yaml")


@pytest.mark.django_db(transaction=True)
async def test_it_runs_an_openai_shaped_request_on_an_ollama_upstream(local, mock):
    request = openai_request_to_native(
        {
            "model": "llama3.2:latest",
            "messages": [
                {"role": "system", "content": "terse"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                },
            ],
            "max_completion_tokens": 20,
            "stop": "END",
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low",
            "tools": [],
        }
    )
    events = await collect(
        llm.stream_chat(
            request.model,
            request.messages,
            options=request.options,
            tools=request.tools,
            format=request.format,
            think=request.think,
            stream=request.stream,
        )
    )
    assert events[-1].completion_tokens == 5
    assert mock.requests[-1].body == {
        "model": "llama3.2:latest",
        "messages": [
            {"role": "system", "content": "terse"},
            {"role": "user", "content": "what?", "images": [PNG]},
        ],
        "stream": False,
        "options": {"num_predict": 20, "stop": ["END"]},
        "tools": [],
        "format": "json",
        "think": "low",
    }
