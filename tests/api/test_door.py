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


async def _call_door(path: str, secret: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request straight into the API door's ASGI application, in this process."""
    from asgiref.testing import ApplicationCommunicator

    from api.asgi import application

    scope = {
        "type": "http",
        "method": "POST" if body else "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {secret}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    door = ApplicationCommunicator(application, scope)
    await door.send_input({"type": "http.request", "body": body})
    start = await door.receive_output(5)
    chunks = []
    while True:
        message = await door.receive_output(5)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await door.wait(5)
    return start["status"], b"".join(chunks)


def _persistent() -> bool:
    from django.db import connection

    return connection.settings_dict["CONN_MAX_AGE"] != 0


def _sync_thread_connection() -> object:
    from django.db import connection

    return connection.connection


@pytest.mark.parametrize("kind", ["key lookup", "generation"])
async def test_a_request_that_used_the_database_closes_its_connection(
    member_key: str, kind: str
) -> None:
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    await sync_to_async(close_old_connections)()
    kept = await sync_to_async(_sync_thread_connection)()  # a persistent one stays (SQLite)
    assert kept is None or _persistent()
    if kind == "key lookup":  # a key new to the cache is read from the database
        status, _ = await _call_door("/api/version", member_key)
    else:  # and every generation writes its ledger row
        body = b'{"model": "llama3.2:latest", "prompt": "hi", "stream": false}'
        status, _ = await _call_door("/api/generate", member_key, body)
    assert status == 200
    after = await sync_to_async(_sync_thread_connection)()
    if _persistent():  # kept for reuse: the same one, not a new one per request
        assert after is not None and (kept is None or after is kept)
    else:
        assert after is None


async def test_a_connection_the_sync_thread_holds_is_closed_by_the_next_request(
    member_key: str,
) -> None:
    """Whoever opened it (a web request, a websocket, a call that outlived its client),
    a connection left in the sync thread is closed when an API request ends."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    def open_one() -> None:
        connection.ensure_connection()

    assert (await _call_door("/api/version", member_key))[0] == 200  # the key is cached now
    await sync_to_async(open_one)()  # opened outside any API request
    opened = await sync_to_async(_sync_thread_connection)()
    assert opened is not None
    assert (await _call_door("/api/version", member_key))[0] == 200  # no query of its own
    # Closed, unless connections are kept for reuse (SQLite): then it is still that one.
    expected = opened if _persistent() else None
    assert await sync_to_async(_sync_thread_connection)() is expected


def test_an_unreachable_redis_is_a_503_to_retry(member_key: str) -> None:
    import socket

    from tests.live import daphne

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        with daphne({"REDIS_URL": f"redis://127.0.0.1:{port}/0"}) as url:
            headers = {"Authorization": f"Bearer {member_key}"}
            ollama = httpx.get(f"{url}/api/tags", headers=headers, timeout=30)
            openai = httpx.get(f"{url}/v1/models", headers=headers, timeout=30)
    finally:
        closed.close()
    assert ollama.status_code == 503 and ollama.headers["retry-after"] == "5"
    assert "unavailable" in ollama.json()["error"]
    assert openai.status_code == 503
    assert openai.json()["error"]["code"] == "service_unavailable"
