"""stream_chat and generate against the mock, for both upstream protocols."""

from __future__ import annotations

import pytest

import llm
from llm.events import Delta, Finished, ToolCall, ToolCalls
from tests.llm.conftest import API_KEY, collect

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
MODELS = pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])


def text_of(events: list) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


@MODELS
async def test_it_streams_every_token_then_one_finished(both, mock, model):
    mock.script(text="The quick brown fox")
    events = await collect(llm.stream_chat(model, HI))
    assert [e.text for e in events[:-1]] == ["The ", "quick ", "brown ", "fox"]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.reason == "stop"
    assert (finished.prompt_tokens, finished.completion_tokens) == (10, 4)
    assert finished.usage_source == "upstream"


@MODELS
async def test_it_returns_the_same_events_without_streaming(both, mock, model):
    mock.script(text="one two three", thinking="let me see")
    events = await collect(llm.stream_chat(model, HI, stream=False))
    assert events[0] == Delta("one two three", "let me see")
    assert isinstance(events[-1], Finished)
    assert events[-1].completion_tokens == 3
    assert mock.requests[-1].body["stream"] is False


@MODELS
async def test_it_streams_thinking_before_text(both, mock, model):
    mock.script(thinking="hmm right", tokens=1)
    events = await collect(llm.stream_chat(model, HI))
    assert [e.thinking for e in events if isinstance(e, Delta) and e.thinking] == ["hmm ", "right"]
    assert text_of(events) == "tok0"


async def test_it_reads_reasoning_content_from_openai_upstreams(cloud, mock):
    mock.script(thinking="deep thought", reasoning_field="reasoning_content", tokens=1)
    events = await collect(llm.stream_chat("gpt-4o-mini", HI))
    assert "".join(e.thinking for e in events if isinstance(e, Delta)) == "deep thought"


@MODELS
async def test_it_assembles_tool_calls_with_parsed_arguments(both, mock, model):
    mock.script(
        tokens=0,
        tool_calls=[
            {"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
            {"name": "get_time", "arguments": {"zone": "Europe/Paris"}},
        ],
    )
    events = await collect(llm.stream_chat(model, HI, tools=[]))
    calls = [e for e in events if isinstance(e, ToolCalls)]
    assert len(calls) == 1
    assert calls[0].calls[0] == ToolCall("call_a", "get_weather", {"city": "Paris", "days": 3})
    second = calls[0].calls[1]
    assert (second.name, second.arguments) == ("get_time", {"zone": "Europe/Paris"})
    assert second.id.startswith("call_")
    assert isinstance(events[-1], Finished)
    assert events[-1].reason == "stop"


async def test_it_parses_non_streamed_openai_tool_calls(cloud, mock):
    mock.script(tokens=0, tool_calls=[{"id": "c1", "name": "f", "arguments": {"x": [1, 2]}}])
    events = await collect(llm.stream_chat("gpt-4o-mini", HI, stream=False))
    assert ToolCalls([ToolCall("c1", "f", {"x": [1, 2]})]) in events


@MODELS
async def test_it_reports_length_when_the_upstream_stops_at_the_limit(both, mock, model):
    mock.script(done_reason="length", tokens=2)
    events = await collect(llm.stream_chat(model, HI, options={"num_predict": 2}))
    assert events[-1].reason == "length"


async def test_it_passes_ollama_timings_through(local, mock):
    mock.script(tokens=3)
    finished = (await collect(llm.stream_chat("llama3.2:latest", HI)))[-1]
    assert finished.timings.total_duration == 5_003_000
    assert finished.timings.load_duration == 1_000_000
    assert finished.timings.prompt_eval_duration == 2_000_000
    assert finished.timings.eval_duration == 2_003_000


async def test_it_measures_timings_on_openai_upstreams(cloud, mock):
    mock.script(tokens=3, ttft=0.05, delay=0.01)
    finished = (await collect(llm.stream_chat("gpt-4o-mini", HI)))[-1]
    timings = finished.timings
    assert timings.load_duration is None
    assert timings.prompt_eval_duration >= 50_000_000
    assert timings.eval_duration > 0
    assert timings.total_duration >= timings.prompt_eval_duration + timings.eval_duration


@MODELS
async def test_it_estimates_usage_when_the_upstream_reports_none(both, mock, model):
    mock.script(text="abcdefgh ijkl", report_usage=False)
    finished = (await collect(llm.stream_chat(model, [{"role": "user", "content": "x" * 40}])))[-1]
    assert finished.usage_source == "estimated"
    assert finished.prompt_tokens == 10  # 40 characters at ~4 per token
    assert finished.completion_tokens == 4  # "abcdefgh ijkl" is 13 characters


async def test_it_always_asks_openai_upstreams_for_usage(cloud, mock):
    await collect(llm.stream_chat("gpt-4o-mini", HI))
    assert mock.requests[-1].body["stream_options"] == {"include_usage": True}


async def test_it_forwards_the_connection_key(cloud, mock):
    await collect(llm.stream_chat("gpt-4o-mini", HI))
    assert mock.requests[-1].headers["authorization"] == f"Bearer {API_KEY}"


@MODELS
async def test_it_ignores_heartbeats(both, mock, model):
    mock.script(tokens=3, heartbeat=True)
    assert text_of(await collect(llm.stream_chat(model, HI))) == "tok0 tok1 tok2"


async def test_it_reads_sse_with_crlf_and_event_lines(cloud, mock):
    mock.script(tokens=3, crlf=True)
    assert text_of(await collect(llm.stream_chat("gpt-4o-mini", HI))) == "tok0 tok1 tok2"


async def test_it_sends_an_ollama_chat_byte_for_byte(local, mock):
    messages = [
        {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgoAAAANSUhEUg=="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "look", "arguments": {"zoom": 2}}}],
        },
        {"role": "tool", "content": "a cat", "tool_name": "look"},
    ]
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    options = {"temperature": 0.2, "num_ctx": 4096, "stop": ["\n\n"], "seed": 7}
    await collect(
        llm.stream_chat(
            "llama3.2:latest",
            messages,
            options=options,
            tools=[],
            format=schema,
            think="high",
            keep_alive="5m",
        )
    )
    assert mock.requests[-1].body == {
        "model": "llama3.2:latest",
        "messages": messages,
        "stream": True,
        "options": options,
        "tools": [],
        "format": schema,
        "think": "high",
        "keep_alive": "5m",
    }


async def test_it_leaves_out_fields_that_were_not_supplied(local, mock):
    await collect(llm.stream_chat("llama3.2:latest", HI))
    assert mock.requests[-1].body == {"model": "llama3.2:latest", "messages": HI, "stream": True}


async def test_it_generates_with_context_on_ollama(local, mock):
    mock.script(tokens=2, context=[5, 6, 7])
    events = await collect(
        llm.generate("llama3.2:latest", "Once", system="Be brief", context=[1, 2], keep_alive=0)
    )
    assert text_of(events) == "tok0 tok1"
    assert events[-1].context == [5, 6, 7]
    assert mock.requests[-1].body == {
        "model": "llama3.2:latest",
        "prompt": "Once",
        "stream": True,
        "system": "Be brief",
        "context": [1, 2],
        "keep_alive": 0,
    }


async def test_it_generates_without_streaming(local, mock):
    mock.script(tokens=2)
    events = await collect(llm.generate("llama3.2:latest", "Once", stream=False, raw=True))
    assert events[0] == Delta("tok0 tok1")
    assert events[-1].context is None  # raw mode has no context
    assert mock.requests[-1].body["raw"] is True


async def test_it_runs_generate_as_a_chat_on_openai_upstreams(cloud, mock):
    mock.script(tokens=2)
    events = await collect(
        llm.generate(
            "gpt-4o-mini",
            "Describe",
            system="Be brief",
            images=["/9j/4AAQSkZJRg=="],
            options={"num_predict": 5},
            context=[1, 2],
        )
    )
    assert text_of(events) == "tok0 tok1"
    assert events[-1].context is None
    body = mock.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="},
                },
            ],
        },
    ]
    assert body["max_tokens"] == 5


async def test_it_translates_a_native_chat_for_an_openai_upstream(cloud, mock):
    messages = [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            ],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    await collect(
        llm.stream_chat(
            "gpt-4o-mini",
            messages,
            tools=tools,
            format="json",
            keep_alive="5m",
            options={"num_predict": 64, "temperature": 0.1, "stop": ["END"], "top_k": 3},
        )
    )
    body = mock.requests[-1].body
    call = body["messages"][2]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert body["messages"][3] == {
        "role": "tool",
        "content": "sunny",
        "tool_call_id": call["id"],
        "name": "get_weather",
    }
    assert body["tools"] == tools
    assert body["response_format"] == {"type": "json_object"}
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (64, 0.1, ["END"])
    assert "top_k" not in body and "keep_alive" not in body


async def test_credentials_in_the_base_url_reach_the_upstream_as_basic_auth(mock, transactional_db):
    from llm.models import Connection

    url = mock.url.replace("http://", "http://lab:s3cret@")
    await Connection.objects.acreate(name="basic", kind="ollama", base_url=url)
    await collect(llm.stream_chat("llama3.2:latest", HI))
    sent = mock.requests[-1]
    assert sent.path == "/api/chat"
    assert sent.headers["authorization"] == "Basic bGFiOnMzY3JldA=="


async def test_an_embeddings_answer_is_checked_before_it_is_passed_on(cloud, mock):
    from llm.client import embed
    from llm.errors import UpstreamError

    items = [{"index": None, "embedding": [1.0]}, {"index": 1, "embedding": [2.0]}]
    mock.embed_answer = {"data": items, "usage": {"prompt_tokens": 0}}
    embedded = await embed("gpt-4o-mini", ["a", "b"])
    assert embedded.vectors == [[1.0], [2.0]]
    assert embedded.usage_source == "estimated"  # 0 tokens for real text is not a count
    for vector in ([1e39], [None], [True], ["1"]):
        items = [{"index": 0, "embedding": vector}, {"index": 1, "embedding": [1]}]
        mock.embed_answer = {"data": items}
        with pytest.raises(UpstreamError, match="an embedding that is not numbers"):
            await embed("gpt-4o-mini", ["a", "b"])
    mock.embed_answer = {"data": [{"index": 0, "embedding": [1.0]}]}
    with pytest.raises(UpstreamError, match="1 embeddings for 2 inputs"):
        await embed("gpt-4o-mini", ["a", "b"])


async def test_a_whole_answer_over_its_limit_is_refused_not_held(mock):
    from llm.clients import ollama
    from llm.clients.base import run_call
    from llm.errors import UpstreamError

    call = ollama.embed_call(mock.url, {}, "llama3.2:latest", "llama3.2:latest", ["x"] * 50)
    assert call.max_body == 256 * 2**20  # embeddings: 256 MiB at most
    call.max_body = 1000  # this answer is about 1.5 kB
    with pytest.raises(UpstreamError, match="sent an answer over"):
        await collect(run_call(call))
