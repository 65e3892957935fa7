"""Values no model server should see are refused on both doors, naming the parameter;
the extremes of each range still reach the model as sent."""

from __future__ import annotations

import httpx
import pytest

from tests.api.wire import USER
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MODEL = "llama3.2:latest"

# -- the Ollama door --------------------------------------------------------------------------

# option: (refused values, accepted extremes)
OPTIONS = {
    "temperature": ([-0.1], [0, 100]),
    "top_p": ([-0.01, 1.01], [0, 1]),
    "min_p": ([-1, 2], [0, 1]),
    "typical_p": ([1.5], [0, 1]),
    "repeat_penalty": ([0, -1], [0.01, 10]),
    "presence_penalty": ([-2.5, 2.5], [-2, 2]),
    "frequency_penalty": ([-3, 3], [-2, 2]),
    "num_predict": ([-3, INT32_MAX + 1], [-2, -1, INT32_MAX]),
    "num_ctx": ([0, INT32_MAX + 1], [1, INT32_MAX]),
    "top_k": ([-1], [0, INT32_MAX]),
    "seed": ([INT64_MAX + 1, INT64_MIN - 1], [INT64_MIN, -1, INT64_MAX]),
    "num_keep": ([-2], [-1]),
    "repeat_last_n": ([-2], [-1, 0]),
    "num_batch": ([0], [1]),
    "num_gpu": ([-2], [-1, 0]),
    "main_gpu": ([-1], [0]),
    "num_thread": ([-1], [0]),
}
NATIVE = {
    "/api/chat": {"model": MODEL, "messages": USER, "stream": False},
    "/api/generate": {"model": MODEL, "prompt": "hi", "stream": False},
}


def ollama_error(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert isinstance(error, str)
    return error


@pytest.mark.parametrize("path", NATIVE)
@pytest.mark.parametrize("option", OPTIONS)
def test_an_option_out_of_range_is_refused_by_name(
    api: httpx.Client, path: str, option: str
) -> None:
    for value in OPTIONS[option][0]:
        response = api.post(path, json={**NATIVE[path], "options": {option: value}})
        error = ollama_error(response)
        assert error.startswith(f'option "{option}" must be '), error
        assert error.endswith(f"got {value}"), error


@pytest.mark.parametrize("path", NATIVE)
@pytest.mark.parametrize("option", OPTIONS)
def test_the_extremes_of_an_option_reach_the_model(
    api: httpx.Client, upstream: MockUpstream, path: str, option: str
) -> None:
    for value in OPTIONS[option][1]:
        response = api.post(path, json={**NATIVE[path], "options": {option: value}})
        assert response.status_code == 200, response.text
        assert upstream.requests[-1].body["options"] == {option: value}


@pytest.mark.parametrize(
    ("path", "field", "refused", "accepted"),
    [
        ("/api/chat", "top_logprobs", [-1, 21], [0, 20]),
        ("/api/generate", "top_logprobs", [21], [20]),
        ("/api/generate", "context", [[-1], [1, INT32_MAX + 1]], [[0, INT32_MAX]]),
        ("/api/embed", "dimensions", [0, INT32_MAX + 1], [1, INT32_MAX]),
    ],
)
def test_top_level_numbers_keep_to_their_range(
    api: httpx.Client, path: str, field: str, refused: list, accepted: list
) -> None:
    base = NATIVE.get(path, {"model": MODEL, "input": "hi"})
    for value in refused:
        error = ollama_error(api.post(path, json={**base, field: value}))
        assert error.startswith(f"{field} must "), error
    for value in accepted:
        response = api.post(path, json={**base, field: value})
        assert response.status_code == 200, response.text


def test_generate_passes_a_valid_context_on(api: httpx.Client, upstream: MockUpstream) -> None:
    response = api.post("/api/generate", json={**NATIVE["/api/generate"], "context": [0, 7]})
    assert response.status_code == 200
    assert upstream.requests[-1].body["context"] == [0, 7]


@pytest.mark.parametrize("role", ["wizard", "", None, "function", "developer"])
def test_an_unknown_ollama_role_is_refused(api: httpx.Client, role: str | None) -> None:
    message = {"content": "hi"} if role is None else {"role": role, "content": "hi"}
    response = api.post("/api/chat", json={**NATIVE["/api/chat"], "messages": [USER[0], message]})
    error = ollama_error(response)
    assert "messages[1]" in error and '"system", "user", "assistant", "tool"' in error, error


def test_every_ollama_role_in_any_case_is_accepted(
    api: httpx.Client, upstream: MockUpstream
) -> None:
    messages = [
        {"role": "System", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "ASSISTANT", "content": "hello"},
        {"role": "tool", "content": "42", "tool_name": "answer"},
        {"role": "user", "content": "and?"},
    ]
    response = api.post("/api/chat", json={**NATIVE["/api/chat"], "messages": messages})
    assert response.status_code == 200, response.text
    sent = [message["role"] for message in upstream.requests[-1].body["messages"]]
    assert sent == ["system", "user", "assistant", "tool", "user"]


# -- the OpenAI door --------------------------------------------------------------------------


def complete(api: httpx.Client, **fields: object) -> httpx.Response:
    return api.post("/v1/chat/completions", json={"model": MODEL, "messages": USER, **fields})


def openai_error(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("temperature", -0.1, "decimal_below_min_value"),
        ("temperature", 2.01, "decimal_above_max_value"),
        ("top_p", -0.5, "decimal_below_min_value"),
        ("top_p", 1.01, "decimal_above_max_value"),
        ("presence_penalty", -2.1, "decimal_below_min_value"),
        ("presence_penalty", 2.1, "decimal_above_max_value"),
        ("frequency_penalty", -2.1, "decimal_below_min_value"),
        ("frequency_penalty", 3, "decimal_above_max_value"),
        ("n", 0, "integer_below_min_value"),
        ("n", 129, "integer_above_max_value"),
        ("max_tokens", 0, "integer_below_min_value"),
        ("max_tokens", -5, "integer_below_min_value"),
        ("max_tokens", INT32_MAX + 1, "integer_above_max_value"),
        ("max_completion_tokens", 0, "integer_below_min_value"),
        ("max_completion_tokens", INT32_MAX + 1, "integer_above_max_value"),
        ("seed", INT64_MAX + 1, "integer_above_max_value"),
        ("top_logprobs", 21, "integer_above_max_value"),
        ("top_logprobs", -1, "integer_below_min_value"),
        ("temperature", "hot", "invalid_type"),
        ("max_tokens", 5.5, "invalid_type"),
        ("n", "2", "invalid_type"),
        ("seed", 1.5, "invalid_type"),
        ("logprobs", "yes", "invalid_type"),
        ("stream", 1, "invalid_type"),
    ],
)
def test_an_openai_field_out_of_range_names_its_param(
    api: httpx.Client, field: str, value: object, code: str
) -> None:
    error = openai_error(complete(api, **{field: value}))
    assert (error["param"], error["code"]) == (field, code)
    assert error["message"].startswith("Invalid ")
    assert f"'{field}'" in error["message"]


@pytest.mark.parametrize(
    ("field", "value", "option"),
    [
        ("temperature", 0, "temperature"),
        ("temperature", 2, "temperature"),
        ("top_p", 0, "top_p"),
        ("top_p", 1, "top_p"),
        ("presence_penalty", -2, "presence_penalty"),
        ("frequency_penalty", 2, "frequency_penalty"),
        ("max_tokens", 1, "num_predict"),
        ("max_tokens", INT32_MAX, "num_predict"),
        ("max_completion_tokens", INT32_MAX, "num_predict"),
        ("seed", INT64_MIN, "seed"),
        ("seed", INT64_MAX, "seed"),
    ],
)
def test_the_extremes_of_an_openai_range_reach_the_model(
    api: httpx.Client, upstream: MockUpstream, field: str, value: float, option: str
) -> None:
    response = complete(api, **{field: value})
    assert response.status_code == 200, response.text
    assert upstream.requests[-1].body["options"][option] == value


@pytest.mark.parametrize(("field", "value"), [("n", 1), ("top_logprobs", 0), ("top_logprobs", 20)])
def test_in_range_fields_that_are_not_passed_on_are_accepted(
    api: httpx.Client, field: str, value: int
) -> None:
    assert complete(api, **{field: value}).status_code == 200


@pytest.mark.parametrize("role", ["wizard", "function", "", "bot"])
def test_an_unknown_openai_role_is_invalid_value_at_its_index(api: httpx.Client, role: str) -> None:
    messages = [*USER, {"role": role, "content": "hi"}]
    error = openai_error(complete(api, messages=messages))
    assert (error["param"], error["code"]) == ("messages[1].role", "invalid_value")
    assert error["message"] == (
        f"Invalid value: '{role}'. Supported values are: "
        "'system', 'developer', 'user', 'assistant', and 'tool'."
    )


def test_every_openai_role_is_accepted(api: httpx.Client) -> None:
    messages = [
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": "really"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        {"role": "user", "content": "and?"},
    ]
    assert complete(api, messages=messages).status_code == 200


def test_stop_takes_at_most_four_sequences(api: httpx.Client, upstream: MockUpstream) -> None:
    error = openai_error(complete(api, stop=["a", "b", "c", "d", "e"]))
    assert (error["param"], error["code"]) == ("stop", "array_above_max_length")
    assert complete(api, stop=["a", "b", "c", "d"]).status_code == 200
    assert upstream.requests[-1].body["options"]["stop"] == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("choice", "code"), [("sometimes", "invalid_value"), (3, "invalid_type"), ([], "invalid_type")]
)
def test_tool_choice_is_a_known_mode_or_an_object(
    api: httpx.Client, choice: object, code: str
) -> None:
    error = openai_error(complete(api, tool_choice=choice))
    assert (error["param"], error["code"]) == ("tool_choice", code)


@pytest.mark.parametrize(
    "choice", ["none", "auto", "required", {"type": "function", "function": {"name": "f"}}]
)
def test_known_tool_choices_are_accepted(api: httpx.Client, choice: object) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert complete(api, tool_choice=choice, tools=tools).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("dimensions", 0, "integer_below_min_value"),
        ("dimensions", INT32_MAX + 1, "integer_above_max_value"),
        ("dimensions", 2.5, "invalid_type"),
        ("encoding_format", "hex", "invalid_value"),
        ("encoding_format", 1, "invalid_type"),
    ],
)
def test_embedding_options_keep_to_their_range(
    api: httpx.Client, field: str, value: object, code: str
) -> None:
    body = {"model": MODEL, "input": "hi", field: value}
    error = openai_error(api.post("/v1/embeddings", json=body))
    assert (error["param"], error["code"]) == (field, code)


def test_embedding_dimensions_at_the_extremes_are_accepted(api: httpx.Client) -> None:
    for dimensions in (1, INT32_MAX):
        body = {"model": MODEL, "input": "hi", "dimensions": dimensions}
        assert api.post("/v1/embeddings", json=body).status_code == 200
