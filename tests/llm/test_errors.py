"""Every engine error class, raised for the upstream failures people actually meet."""

from __future__ import annotations

import pytest

import llm
from llm import catalog
from llm.errors import (
    InvalidRequest,
    LLMError,
    ModelNotFound,
    UpstreamError,
    UpstreamInterrupted,
    UpstreamUnavailable,
)
from tests.llm.conftest import collect

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
MODELS = pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])


async def test_it_raises_model_not_found_for_a_model_no_connection_serves(both):
    with pytest.raises(ModelNotFound, match="model 'nope' not found"):
        await collect(llm.stream_chat("nope", HI))


@MODELS
async def test_it_turns_an_upstream_404_for_the_model_into_model_not_found(both, mock, model):
    mock.script(model=model, status=404, error=f"model '{model}' not found")
    with pytest.raises(ModelNotFound) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.model == model


@MODELS
async def test_it_reports_an_upstream_error_status_and_message(both, mock, model):
    mock.script(status=500, error="CUDA out of memory")
    with pytest.raises(UpstreamError) as raised:
        await collect(llm.stream_chat(model, HI))
    assert (raised.value.status, raised.value.message) == (500, "CUDA out of memory")


async def test_it_truncates_a_huge_error_body(local, mock):
    mock.script(status=500, error="x" * 100_000)
    with pytest.raises(UpstreamError) as raised:
        await collect(llm.stream_chat("llama3.2:latest", HI))
    assert len(raised.value.message) <= 500


async def test_it_says_when_the_upstream_refuses_the_key(cloud, mock):
    await catalog.list_models()
    mock.api_key = "sk-rotated-upstream-key"
    with pytest.raises(UpstreamError) as raised:
        await collect(llm.stream_chat("gpt-4o-mini", HI))
    assert raised.value.status == 401
    assert "API key" in raised.value.message


@MODELS
async def test_it_says_when_the_upstream_is_unreachable(both, mock, model):
    await catalog.list_models()  # cached while the upstream was up
    mock.stop()
    with pytest.raises(UpstreamUnavailable) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.message == "the model server could not be reached"
    assert raised.value.url.startswith(mock.url)  # kept for the log


async def test_it_gives_up_waiting_for_the_first_byte(local, mock, settings):
    settings.LLM_FIRST_BYTE_TIMEOUT = 0.2
    mock.script(ttft=2)
    with pytest.raises(UpstreamUnavailable, match=r"did not start answering within 0.2 s"):
        await collect(llm.stream_chat("llama3.2:latest", HI))


@MODELS
async def test_it_interrupts_a_stream_that_stalls_between_chunks(both, mock, settings, model):
    settings.LLM_CHUNK_TIMEOUT = 0.3
    mock.script(tokens=3, delay=2)
    with pytest.raises(UpstreamInterrupted, match=r"stopped answering \(nothing for 0.3 s\)"):
        await collect(llm.stream_chat(model, HI))


@MODELS
async def test_it_keeps_the_partial_text_when_the_connection_is_cut(both, mock, model):
    mock.script(tokens=10, cut_after=3)
    received = []
    with pytest.raises(UpstreamInterrupted) as raised:
        async for event in llm.stream_chat(model, HI):
            received.append(event)
    assert raised.value.partial == "tok0 tok1 tok2 "
    assert "".join(e.text for e in received) == raised.value.partial


@MODELS
async def test_it_interrupts_with_the_partial_text_on_an_error_mid_stream(both, mock, model):
    mock.script(tokens=10, error_after=2, error="upstream crashed")
    with pytest.raises(UpstreamInterrupted) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.partial == "tok0 tok1 "
    assert raised.value.reason == "upstream crashed"


@MODELS
async def test_it_raises_an_upstream_error_for_an_in_band_error_before_any_text(both, mock, model):
    mock.script(tokens=10, error_after=0, error="model failed to load")
    with pytest.raises(UpstreamError) as raised:
        await collect(llm.stream_chat(model, HI))
    assert (raised.value.status, raised.value.message) == (500, "model failed to load")


async def test_it_refuses_invalid_tool_arguments_from_an_openai_upstream(cloud, mock):
    mock.script(tokens=0, tool_calls=[{"name": "f", "arguments": '{"a": 1'}])
    with pytest.raises(UpstreamError, match="invalid arguments for tool 'f'"):
        await collect(llm.stream_chat("gpt-4o-mini", HI))


async def test_it_refuses_a_suffix_on_an_openai_upstream(cloud):
    with pytest.raises(InvalidRequest) as raised:
        await collect(llm.generate("gpt-4o-mini", "def f(", suffix="return 1"))
    assert raised.value.param == "suffix"


async def test_it_treats_a_disabled_connection_as_absent(local):
    await catalog.list_models()
    local.enabled = False
    await local.asave()
    with pytest.raises(ModelNotFound):
        await collect(llm.stream_chat("llama3.2:latest", HI))


def test_every_error_is_an_llm_error_with_a_message():
    errors = [
        ModelNotFound("m"),
        UpstreamUnavailable("http://x", "refused"),
        UpstreamError(502, "bad"),
        UpstreamInterrupted("par", "cut"),
        InvalidRequest("no", param="p"),
    ]
    assert all(isinstance(e, LLMError) and str(e) == e.message for e in errors)
    assert "http://x" not in errors[1].message and errors[1].url == "http://x"
