from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from chatsite.embedded import start_redis, stop

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@pytest.mark.django_db
def test_health_reports_the_database_and_redis(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "database": True, "redis": True}


@pytest.mark.django_db
def test_every_response_carries_a_request_id(client: Client) -> None:
    first = client.get("/health")["x-request-id"]
    second = client.get("/health")["x-request-id"]
    assert first.startswith("req_") and first != second
    assert client.get("/no-such-page")["x-request-id"]


def test_the_embedded_redis_starts_on_a_socket_and_stops(tmp_path: Path) -> None:
    import redis

    process, url = start_redis(tmp_path)
    try:
        assert url == f"unix://{tmp_path / 'redis.sock'}"
        assert redis.Redis.from_url(url).ping()
    finally:
        stop(process)
    assert process.poll() is not None


def test_the_deploy_check_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "chat.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        "SECURE_PROXY_SSL": "1",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_COOKIES": "1",
        "SECURE_HSTS_SECONDS": "31536000",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set by the browser tests only
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_a_caller_s_request_id_is_echoed_only_when_it_is_a_plain_token(client: Client) -> None:
    assert client.get("/health", HTTP_X_REQUEST_ID="trace-1234567")["x-request-id"] == (
        "trace-1234567"
    )
    odd = client.get("/health", HTTP_X_REQUEST_ID="evil\x07value<script>")["x-request-id"]
    assert odd.startswith("req_")


@pytest.mark.parametrize(
    ("host", "interface"),
    [("127.0.0.1", "127.0.0.1"), ("::1", "\\:\\:1"), ("[::1]", "\\:\\:1"), ("0.0.0.0", "0.0.0.0")],
)
def test_daphne_listens_with_a_deep_backlog_on_any_host(host: str, interface: str) -> None:
    from chatsite.embedded import daphne_endpoint

    assert daphne_endpoint(host, 8000) == f"tcp:port=8000:interface={interface}:backlog=1024"
