"""The NDJSON and SSE encoders and the two wire formats' refusals on their own: exact bytes,
no server."""

from __future__ import annotations

import json

from api import formats, ndjson, sse
from api.errors import ApiError
from api.formats import OLLAMA, OPENAI
from llm.errors import (
    UNREACHABLE,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from llm.events import Finished, Timings, ToolCall
from tests.api.wire import RFC3339, sse_events


def test_created_at_is_rfc3339_with_nanoseconds_in_utc() -> None:
    stamp = ndjson.created_at()
    assert RFC3339.fullmatch(stamp) and stamp.endswith("Z") and len(stamp.split(".")[1]) == 10


def test_a_delta_line_is_one_compact_json_line() -> None:
    line = ndjson.OllamaStreamEncoder('we"ird', chat=True).delta('say "hi"\n', "")
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    body = json.loads(line)
    assert body["model"] == 'we"ird' and body["done"] is False
    assert body["message"] == {"role": "assistant", "content": 'say "hi"\n'}


def test_generate_lines_carry_response_and_thinking() -> None:
    body = json.loads(ndjson.OllamaStreamEncoder("m", chat=False).delta("a", "b"))
    assert (body["response"], body["thinking"]) == ("a", "b")


def test_non_ascii_and_lone_surrogates_stay_valid_json() -> None:
    line = ndjson.OllamaStreamEncoder("m", chat=True).delta("héllo \ud800 🌍", "")
    assert json.loads(line)["message"]["content"].startswith("héllo")


def test_upstream_metrics_pass_through_untouched() -> None:
    timings = Timings(total_duration=9, load_duration=1, prompt_eval_duration=3, eval_duration=5)
    finished = Finished("length", 4, 2, timings)
    final = ndjson.OllamaStreamEncoder("m", chat=True).final_object(
        finished, ndjson.Clock(), context=False
    )
    assert final["done_reason"] == "length"
    assert [final[name] for name in ndjson.METRICS] == [9, 1, 4, 3, 2, 5]


def test_missing_durations_are_filled_consistently() -> None:
    finished = Finished("stop", 4, 2, Timings(total_duration=1000))
    metrics = ndjson.metrics(finished, ndjson.Clock())
    assert metrics["prompt_eval_duration"] == 0 and metrics["eval_duration"] == 1000
    measured = ndjson.metrics(Finished("stop", 1, 1), ndjson.Clock())
    assert all(isinstance(value, int) and value >= 0 for value in measured.values())
    assert measured["eval_duration"] >= 1


def test_tool_calls_keep_arguments_as_objects_natively_and_strings_for_openai() -> None:
    calls = [ToolCall("call_1", "f", {"a": 1})]
    native = json.loads(ndjson.OllamaStreamEncoder("m", chat=True).tool_calls(calls))
    assert native["message"]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    event = json.loads(sse.OpenAIStreamEncoder("m", include_usage=False).tool_calls(calls)[6:])
    fragment = event["choices"][0]["delta"]["tool_calls"][0]
    assert fragment["index"] == 0 and fragment["function"]["arguments"] == '{"a": 1}'


def test_sse_chunks_share_id_and_created_and_end_in_a_blank_line() -> None:
    events = sse.OpenAIStreamEncoder("m", include_usage=True)
    body = events.role() + events.content("x") + events.finish("stop") + events.usage(None)
    chunks = [json.loads(data) for data in sse_events(body)]
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert [c.get("usage") for c in chunks[:3]] == [None, None, None]
    assert chunks[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 0


def test_finish_reasons_follow_the_tools_rule() -> None:
    assert sse.finish_reason(Finished("stop", 0, 0), called_tools=True) == "tool_calls"
    assert sse.finish_reason(Finished("", 0, 0), called_tools=False) == "stop"
    assert sse.finish_reason(Finished("length", 0, 0), called_tools=False) == "length"


def test_engine_errors_map_to_statuses_that_name_the_model() -> None:
    missing = OLLAMA.engine_error(ModelNotFound("x"), "x")
    assert (missing.status, missing.message) == (404, "model 'x' not found")
    missing = OPENAI.engine_error(ModelNotFound("x"), "x")
    assert missing.status == 404 and missing.message.startswith("The model `x` does not exist")
    assert OPENAI.engine_error(InvalidRequest("bad", "stop"), "x").param == "stop"
    unavailable = OPENAI.engine_error(UpstreamUnavailable("http://u", "refused"), "m1")
    assert unavailable.status == 502 and "m1" in unavailable.message
    assert OPENAI.engine_error(UpstreamError(413, "too big"), "m").status == 413
    assert OPENAI.engine_error(UpstreamError(401, "no"), "m").status == 502
    assert OPENAI.engine_error(UpstreamError(503, "busy"), "m").status == 502


def test_both_error_shapes() -> None:
    error = ApiError(400, "nope", param="n", headers={"Retry-After": "5"})
    assert OLLAMA.error_body(error) == {"error": "nope"}
    assert OPENAI.error_body(error) == {
        "error": {"message": "nope", "type": "invalid_request_error", "param": "n", "code": None}
    }
    response = OPENAI.error_response(error)
    assert response.status_code == 400 and response["Retry-After"] == "5"
    assert json.loads(response.content) == OPENAI.error_body(error)


def test_a_stream_that_breaks_ends_in_its_formats_own_shape() -> None:
    broken = UpstreamUnavailable("http://u", "refused")
    line = OLLAMA.stream_error(broken, "m1")
    assert line.endswith(b"\n") and json.loads(line) == {
        "error": f"model 'm1' is unavailable: {UNREACHABLE}"
    }
    (event,) = sse_events(OPENAI.stream_error(RuntimeError("bug"), "m1"))
    assert json.loads(event)["error"]["code"] == "server_error"


def test_each_path_prefix_belongs_to_one_format() -> None:
    assert formats.for_path("/api/chat") is OLLAMA
    assert formats.for_path("/v1/chat/completions") is OPENAI
    assert formats.for_path("/apix") is None and not formats.serves("/keys/")
    assert OLLAMA.route("chat") == "api/chat" and OPENAI.route("models") == "v1/models"
