"""The API door answers only the host names in ALLOWED_HOSTS, as the pages do."""

from __future__ import annotations

import httpx
import pytest

from tests.api.wire import USER

pytestmark = pytest.mark.django_db(transaction=True)

EVIL = {"Host": "evil.example"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/tags", None),
        ("POST", "/api/chat", {"model": "llama3.2:latest", "messages": USER}),
        ("GET", "/api/no-such-endpoint", None),
    ],
)
def test_a_foreign_host_is_a_400_in_ollama_shape(
    api: httpx.Client, method: str, path: str, body: dict | None
) -> None:
    response = api.request(method, path, json=body, headers=EVIL)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid Host header 'evil.example': this site does not answer to that name"
    }
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("POST", "/v1/chat/completions", {"model": "llama3.2:latest", "messages": USER}),
    ],
)
def test_a_foreign_host_is_a_400_in_openai_shape(
    api: httpx.Client, method: str, path: str, body: dict | None
) -> None:
    response = api.request(method, path, json=body, headers=EVIL)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_host"
    assert error["param"] is None and "evil.example" in error["message"]


def test_a_malformed_host_is_refused_too(api: httpx.Client) -> None:
    response = api.get("/api/version", headers={"Host": "bad host"})
    assert response.status_code == 400
    assert "Invalid Host header" in response.json()["error"]


def test_allowed_names_are_served(api: httpx.Client, daphne_url: str) -> None:
    port = httpx.URL(daphne_url).port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert api.get("/api/version", headers={"Host": host}).status_code == 200


def test_pages_refuse_a_foreign_host_as_before(anonymous: httpx.Client) -> None:
    assert anonymous.get("/accounts/login/", headers=EVIL).status_code == 400
