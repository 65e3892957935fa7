"""What members and key holders read about an upstream failure, and what the log keeps.

The message (`LLMError.message`, what the chat runner and the API door show) says what
happened in plain words: never the model server's address, never the HTTP library's
exception. The log line (one WARNING) has both, and the request id when the caller set one.
"""

from __future__ import annotations

import logging
import re

import pytest

import llm
from llm import catalog
from llm.context import request_id
from llm.errors import LLMError, UpstreamError, UpstreamInterrupted, UpstreamUnavailable
from tests.llm.conftest import collect
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]
MODELS = pytest.mark.parametrize("model", ["llama3.2:latest", "gpt-4o-mini"])
EXCEPTION_NAME = re.compile(r"\b[A-Z]\w*(Error|Timeout|Exception)\b")
REQUEST = "req_failure_0001"


def assert_plain(error: LLMError, mock: MockUpstream) -> None:
    """No address of the model server and no exception name in what people read."""
    for text in (error.message, str(error)):
        assert "127.0.0.1" not in text and str(mock.port) not in text and "http" not in text
        assert not EXCEPTION_NAME.search(text), text


def logged(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The one warning the engine logged about the failure."""
    records = [
        r for r in caplog.records if r.name.startswith("llm") and r.levelno == logging.WARNING
    ]
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


def assert_logged(record: logging.LogRecord, mock: MockUpstream, *words: str) -> None:
    line = record.getMessage()
    assert "\n" not in line
    assert f"127.0.0.1:{mock.port}" in line
    assert f"[request {REQUEST}]" in line and record.request_id == REQUEST  # type: ignore[attr-defined]
    for word in words:
        assert word in line, line


@pytest.fixture(autouse=True)
def _request() -> None:
    request_id.set(REQUEST)  # as a front door does; each test runs in a context of its own


@MODELS
async def test_a_stalled_stream_says_the_model_server_stopped_answering(
    both, mock, settings, caplog, model
):
    settings.LLM_CHUNK_TIMEOUT = 0.3
    mock.script(tokens=3, delay=2)
    with pytest.raises(UpstreamInterrupted) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.message == (
        "the model's reply was interrupted: the model server stopped answering (nothing for 0.3 s)"
    )
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "ReadTimeout")


@MODELS
async def test_a_cut_stream_says_the_model_server_closed_the_connection(both, mock, caplog, model):
    mock.script(tokens=10, cut_after=3)
    with pytest.raises(UpstreamInterrupted) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.message == (
        "the model's reply was interrupted: the model server closed the connection mid-reply"
    )
    assert raised.value.partial == "tok0 tok1 tok2 "
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "RemoteProtocolError")


@MODELS
async def test_an_unreachable_model_server_is_said_so(both, mock, caplog, model):
    await catalog.list_models()  # cached while the upstream was up
    mock.stop()
    with pytest.raises(UpstreamUnavailable) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.message == "the model server could not be reached"
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "ConnectError: [Errno 111]")


async def test_a_reply_that_never_starts_is_said_so(local, mock, settings, caplog):
    settings.LLM_FIRST_BYTE_TIMEOUT = 0.2
    mock.script(ttft=2)
    with pytest.raises(UpstreamUnavailable) as raised:
        await collect(llm.stream_chat("llama3.2:latest", HI))
    assert raised.value.message == "the model server did not start answering within 0.2 s"
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "ReadTimeout")


@MODELS
async def test_a_connection_closed_before_any_answer_is_said_so(both, mock, caplog, model):
    mock.script(cut_after=0)
    with pytest.raises(UpstreamUnavailable) as raised:
        await collect(llm.stream_chat(model, HI, stream=False))
    assert raised.value.message == "the model server closed the connection without answering"
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "RemoteProtocolError")


@MODELS
async def test_the_model_servers_own_error_is_kept_without_our_address(both, mock, caplog, model):
    mock.script(status=500, error=f"model requires more memory (runner {mock.url}/api/chat)")
    with pytest.raises(UpstreamError) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.message == "model requires more memory (runner the model server)"
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock, "HTTP 500")


@MODELS
async def test_an_in_band_error_mid_stream_loses_our_address_too(both, mock, caplog, model):
    mock.script(tokens=10, error_after=2, error=f"llama runner 127.0.0.1:{mock.port} crashed")
    with pytest.raises(UpstreamInterrupted) as raised:
        await collect(llm.stream_chat(model, HI))
    assert raised.value.reason == "llama runner the model server crashed"
    assert_plain(raised.value, mock)
    assert_logged(logged(caplog), mock)


async def test_without_a_request_id_the_log_line_says_none(local, mock, caplog):
    request_id.set("")
    mock.script(status=500, error="boom")
    with pytest.raises(UpstreamError):
        await collect(llm.stream_chat("llama3.2:latest", HI))
    line = logged(caplog).getMessage()
    assert "[request" not in line and "boom" in line and f"127.0.0.1:{mock.port}" in line
