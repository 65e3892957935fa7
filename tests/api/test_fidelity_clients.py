"""The official `openai` and `ollama` clients, unmodified, get what they ask the model server
for: the tool they name, strict structured output, logprobs and reasoning (docs/api.md,
What reaches the model server)."""

from __future__ import annotations

import json

import ollama
import openai
import pytest
from pydantic import BaseModel

from tests.api.wire import USER
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = ["llama3.2:latest", "gpt-4o-mini"]  # an Ollama server's, an OpenAI-compatible one's
TOKENS = [f"tok{i} " for i in range(4)] + ["tok4"]


def tool(name: str) -> dict:
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def openai_client(daphne_url: str, member_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{daphne_url}/v1", api_key=member_key, max_retries=0)


@pytest.fixture
def ollama_client(daphne_url: str, member_key: str) -> ollama.Client:
    return ollama.Client(host=daphne_url, headers={"Authorization": f"Bearer {member_key}"})


@pytest.mark.parametrize("model", MODELS)
def test_tool_choice_by_name_returns_that_tools_call(
    openai_client: openai.OpenAI, upstream: MockUpstream, model: str
) -> None:
    # The mock calls the tool the request forces, else the first one offered.
    upstream.script(call_offered_tool={"city": "Oslo"})
    fields = {
        "model": model,
        "messages": USER,
        "tools": [tool("get_weather"), tool("get_time")],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
    }
    whole = openai_client.chat.completions.create(**fields)
    call = whole.choices[0].message.tool_calls[0]
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_time",
        {"city": "Oslo"},
    )
    with openai_client.chat.completions.stream(**fields) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_time"
    assert final.choices[0].finish_reason == "tool_calls"


def test_parse_sends_a_strict_schema_with_its_name(
    openai_client: openai.OpenAI, upstream: MockUpstream
) -> None:
    upstream.script(text='{"name": "Ada", "age": 36}')
    parsed = openai_client.chat.completions.parse(
        model="gpt-4o-mini", messages=USER, response_format=Person
    )
    assert parsed.choices[0].message.parsed == Person(name="Ada", age=36)
    sent = upstream.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert (sent["json_schema"]["name"], sent["json_schema"]["strict"]) == ("Person", True)
    schema = sent["json_schema"]["schema"]
    assert set(schema["properties"]) == {"name", "age"} and schema["additionalProperties"] is False
    # An Ollama server has no name or strict to take: it holds the output to the schema.
    again = openai_client.chat.completions.parse(
        model="llama3.2:latest", messages=USER, response_format=Person
    )
    assert again.choices[0].message.parsed == Person(name="Ada", age=36)
    assert upstream.requests[-1].body["format"] == schema


@pytest.mark.parametrize("model", MODELS)
def test_logprobs_come_back_from_a_server_that_gives_them(
    openai_client: openai.OpenAI, model: str
) -> None:
    whole = openai_client.chat.completions.create(
        model=model, messages=USER, logprobs=True, top_logprobs=2
    )
    content = whole.choices[0].logprobs.content
    assert [entry.token for entry in content] == TOKENS
    assert content[0].logprob == -0.25 and content[0].bytes == list(b"tok0 ")
    assert [top.token for top in content[1].top_logprobs] == ["tok1 ", "alt1"]
    stream = openai_client.chat.completions.create(
        model=model, messages=USER, logprobs=True, top_logprobs=2, stream=True
    )
    streamed = [
        entry.token
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert streamed == TOKENS


@pytest.mark.parametrize(
    ("model", "field"),
    [("qwen3:8b", "reasoning"), ("gpt-4o-mini", "reasoning_content"), ("gpt-4o-mini", "reasoning")],
)
def test_reasoning_arrives_in_reasoning_content(
    openai_client: openai.OpenAI, upstream: MockUpstream, model: str, field: str
) -> None:
    upstream.script(thinking="Let me think.", tokens=1, reasoning_field=field)
    whole = openai_client.chat.completions.create(
        model=model, messages=USER, reasoning_effort="low"
    )
    assert whole.choices[0].message.model_extra["reasoning_content"] == "Let me think."
    stream = openai_client.chat.completions.create(
        model=model, messages=USER, reasoning_effort="low", stream=True
    )
    pieces = [
        (chunk.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for chunk in stream
        if chunk.choices
    ]
    assert "".join(pieces) == "Let me think."


@pytest.mark.parametrize("model", MODELS)
def test_the_ollama_client_gets_logprobs(ollama_client: ollama.Client, model: str) -> None:
    reply = ollama_client.chat(model=model, messages=USER, logprobs=True, top_logprobs=2)
    assert [entry.token for entry in reply.logprobs] == TOKENS
    assert [top.token for top in reply.logprobs[0].top_logprobs] == ["tok0 ", "alt1"]
    streamed = ollama_client.generate(model=model, prompt="Why?", logprobs=True, stream=True)
    assert [entry.token for part in streamed for entry in part.logprobs or []] == TOKENS


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_the_ollama_client_gets_an_openai_servers_reasoning_as_thinking(
    ollama_client: ollama.Client, upstream: MockUpstream, field: str
) -> None:
    upstream.script(thinking="Let me think.", tokens=1, reasoning_field=field)
    reply = ollama_client.chat(model="gpt-4o-mini", messages=USER, think="low")
    assert reply.message.thinking == "Let me think."
    assert upstream.requests[-1].body["reasoning_effort"] == "low"
    streamed = ollama_client.chat(model="gpt-4o-mini", messages=USER, think="low", stream=True)
    assert "".join(part.message.thinking or "" for part in streamed) == "Let me think."
