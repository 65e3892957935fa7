"""The official clients, unmodified, against the live server (checklist 13, 14, 16, 26, 28)."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from tests.api.wire import USER
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def ollama_client(daphne_url: str, member_key: str) -> ollama.Client:
    return ollama.Client(host=daphne_url, headers={"Authorization": f"Bearer {member_key}"})


@pytest.fixture
def openai_client(daphne_url: str, member_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{daphne_url}/v1", api_key=member_key, max_retries=0)


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_ollama_chat_streams_and_answers_whole(ollama_client: ollama.Client, model: str) -> None:
    chunks = list(ollama_client.chat(model=model, messages=USER, stream=True))
    assert "".join(c.message.content or "" for c in chunks) == "tok0 tok1 tok2 tok3 tok4"
    final = chunks[-1]
    assert final.done and final.done_reason == "stop"
    assert final.eval_count == 5 and final.eval_duration and final.eval_duration > 0
    whole = ollama_client.chat(model=model, messages=USER)
    assert whole.message.content == "tok0 tok1 tok2 tok3 tok4"


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_ollama_generate_list_show_and_ps(ollama_client: ollama.Client, model: str) -> None:
    streamed = list(ollama_client.generate(model=model, prompt="Why?", stream=True))
    assert "".join(c.response for c in streamed) == "tok0 tok1 tok2 tok3 tok4"
    assert ollama_client.generate(model=model, prompt="Why?").done
    assert model in [m.model for m in ollama_client.list().models]
    assert ollama_client.show(model).modelinfo is not None
    assert ollama_client.ps().models == []


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_ollama_embed_takes_a_string_or_a_list(ollama_client: ollama.Client, model: str) -> None:
    one = ollama_client.embed(model=model, input="hello there")
    assert one.model == model
    assert one.embeddings == [[1.1, 0.5, -0.25]]
    many = ollama_client.embed(model=model, input=["a", "bbbbbbbbbbbbbbbbbbbb"])
    assert many.embeddings == [[0.1, 0.5, -0.25], [2.0, 0.5, -0.25]]
    assert many.prompt_eval_count == 2


def test_ollama_tool_calls_parse(ollama_client: ollama.Client, upstream: MockUpstream) -> None:
    upstream.script(tokens=0, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    for model in ("llama3.2:latest", "gpt-4o-mini"):
        reply = ollama_client.chat(model=model, messages=USER, tools=[WEATHER])
        call = reply.message.tool_calls[0]
        assert call.function.name == "get_weather" and call.function.arguments == {"city": "Oslo"}


def test_ollama_client_errors(ollama_client: ollama.Client, upstream: MockUpstream) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        ollama_client.chat(model="nope", messages=USER)
    assert missing.value.status_code == 404 and "nope" in missing.value.error
    upstream.script(error_after=2, error="GPU fell off")
    with pytest.raises(ollama.ResponseError, match="GPU fell off"):
        list(ollama_client.chat(model="llama3.2:latest", messages=USER, stream=True))
    with pytest.raises(ollama.ResponseError) as whole:
        ollama_client.chat(model="llama3.2:latest", messages=USER)
    assert whole.value.status_code == 502


def test_ollama_client_authenticates_from_the_environment(
    daphne_url: str, member_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_API_KEY", member_key)
    assert ollama.Client(host=daphne_url).list().models
    monkeypatch.setenv("OLLAMA_API_KEY", "cs-wrong")
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=daphne_url).list()
    assert refused.value.status_code == 401


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_openai_chat_streams_and_answers_whole(openai_client: openai.OpenAI, model: str) -> None:
    stream = openai_client.chat.completions.create(
        model=model, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4"
    assert chunks[-1].usage.total_tokens == 15
    whole = openai_client.chat.completions.create(model=model, messages=USER, temperature=0.5)
    assert whole.choices[0].message.content == text
    assert whole.usage.completion_tokens == 5
    assert whole._request_id.startswith("req_")


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_openai_tools_stream_to_a_final_completion(
    openai_client: openai.OpenAI, upstream: MockUpstream, model: str
) -> None:
    upstream.script(tokens=0, tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    with openai_client.chat.completions.stream(
        model=model, messages=USER, tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_openai_json_mode_reaches_the_upstream(
    openai_client: openai.OpenAI, upstream: MockUpstream
) -> None:
    upstream.script(text='{"ok": true}')
    reply = openai_client.chat.completions.create(
        model="llama3.2:latest", messages=USER, response_format={"type": "json_object"}
    )
    assert json.loads(reply.choices[0].message.content) == {"ok": True}
    assert upstream.requests[-1].body["format"] == "json"


def test_openai_models_list_and_retrieve(openai_client: openai.OpenAI) -> None:
    ids = [model.id for model in openai_client.models.list()]
    assert ids == ["llama3.2:latest", "qwen3:8b", "gpt-4o-mini", "gpt-4.1"]
    assert openai_client.models.retrieve("llama3.2:latest").id == "llama3.2:latest"


@pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
def test_openai_embeddings_from_either_kind_of_upstream(
    openai_client: openai.OpenAI, model: str
) -> None:
    # The SDK asks for base64 unless told otherwise, and decodes it itself.
    answer = openai_client.embeddings.create(model=model, input=["a", "bbbbbbbbbbbbbbbbbbbb"])
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.data[0].embedding == pytest.approx([0.1, 0.5, -0.25])
    assert answer.data[1].embedding == pytest.approx([2.0, 0.5, -0.25])
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 2
    floats = openai_client.embeddings.create(model=model, input="x", encoding_format="float")
    assert floats.data[0].embedding == [0.1, 0.5, -0.25]


def test_openai_errors_are_typed(openai_client: openai.OpenAI, upstream: MockUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client.chat.completions.create(model="nope", messages=USER)
    assert missing.value.code == "model_not_found" and missing.value.request_id
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.chat.completions.create(model="llama3.2:latest", messages=USER, n=2)
    assert bad.value.param == "n"
    upstream.script(error_after=1, error="GPU fell off")
    with pytest.raises(openai.APIError) as broken:
        list(
            openai_client.chat.completions.create(
                model="llama3.2:latest", messages=USER, stream=True
            )
        )
    assert "GPU fell off" in broken.value.message and broken.value.code


def test_openai_rejects_a_wrong_key(daphne_url: str, upstream: MockUpstream) -> None:
    client = openai.OpenAI(base_url=f"{daphne_url}/v1", api_key="cs-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.code == "invalid_api_key"
