"""The API's own ASGI door: what it keeps of Django's handler, seen over a real socket."""

from __future__ import annotations

import httpx
import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_openai_path_is_a_404_in_openai_shape(api: httpx.Client) -> None:
    response = api.post("/v1/embeddingz", json={})
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "/v1/embeddingz" in error["message"]
    assert response.headers["x-request-id"]


def test_an_unknown_ollama_path_is_a_404_in_ollama_shape(api: httpx.Client) -> None:
    response = api.get("/api/pull-everything")
    assert response.status_code == 404
    assert isinstance(response.json()["error"], str)


def test_a_body_over_the_limit_is_a_413_not_a_500(api: httpx.Client) -> None:
    huge = b'{"model": "llama3.2:latest", "prompt": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    response = api.post("/api/generate", content=huge)
    assert response.status_code == 413
    assert "32 MiB" in response.json()["error"]


def test_a_client_request_id_is_echoed(api: httpx.Client) -> None:
    response = api.get("/api/version", headers={"X-Request-Id": "trace-1234567"})
    assert response.headers["x-request-id"] == "trace-1234567"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_answer_gets_its_own_request_id(api: httpx.Client) -> None:
    ids = {api.get("/api/version").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_the_django_handler_path_also_answers_413_in_protocol_shape(
    client: object, member_key: str
) -> None:
    response = client.post(  # type: ignore[attr-defined]
        "/api/chat",
        data=b'{"model": "llama3.2:latest", "messages": []}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {member_key}"},
    )
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
