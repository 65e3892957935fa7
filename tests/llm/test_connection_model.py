"""The Connection model: the key encrypted at rest, validation, allowlist and names."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db

from llm.models import Connection
from llm.services import sync_default_connections

pytestmark = pytest.mark.django_db

KEY = "sk-live-abcdefghijklmnop"


def test_it_never_stores_the_key_in_clear():
    saved = Connection(name="c", kind="openai", base_url="https://api.example.com/v1")
    saved.api_key = KEY
    saved.save()
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM llm_connection WHERE id = %s", [saved.pk])
        row = " ".join(str(value) for value in cursor.fetchone())
    assert KEY not in row
    assert Connection.objects.get(pk=saved.pk).api_key == KEY


def test_it_shows_only_the_last_four_characters():
    saved = Connection(name="c", base_url="http://x")
    assert saved.api_key_hint == "none"
    saved.api_key = KEY
    assert saved.api_key_hint == "…mnop"
    saved.api_key = "short"
    assert saved.api_key_hint == "set"


def test_it_cannot_read_a_key_stored_under_another_secret_key(settings):
    saved = Connection(name="c", base_url="http://x")
    saved.api_key = KEY
    settings.SECRET_KEY = "another secret key entirely, long enough"
    with pytest.raises(ValueError, match="SECRET_KEY"):
        _ = saved.api_key


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc/passwd", "example.com"])
def test_it_accepts_only_http_urls(url):
    with pytest.raises(ValidationError):
        Connection(name="c", base_url=url).full_clean()


def test_it_allows_models_by_name_or_pattern():
    connection = Connection(allowed_models=["llama*", "qwen3:8b"])
    assert connection.allows("llama3.2:latest") and connection.allows("qwen3:8b")
    assert not connection.allows("qwen3:14b")
    assert Connection(allowed_models=[]).allows("anything")


def test_it_prefixes_public_names():
    connection = Connection(prefix="lab/")
    assert connection.public_name("qwen3:8b") == "lab/qwen3:8b"
    assert connection.upstream_name("lab/qwen3:8b") == "qwen3:8b"


def test_it_creates_then_updates_the_default_connections(settings):
    settings.OLLAMA_BASE_URL = "http://127.0.0.1:11434/"
    settings.OPENAI_BASE_URL = "https://api.example.com/v1"
    settings.OPENAI_API_KEY = KEY
    line = sync_default_connections()
    assert "ollama created" in line and "openai created" in line
    assert Connection.objects.get(name="ollama").base_url == "http://127.0.0.1:11434"
    assert Connection.objects.get(name="openai").api_key == KEY
    settings.OPENAI_API_KEY = "sk-rotated-0000000000"
    assert "openai updated" in sync_default_connections()
    assert Connection.objects.get(name="openai").api_key == "sk-rotated-0000000000"


def test_it_skips_default_connections_that_are_not_configured(settings):
    settings.OLLAMA_BASE_URL = ""
    settings.OPENAI_BASE_URL = ""
    assert sync_default_connections() == "connections: no default upstream configured"
    assert not Connection.objects.exists()


def test_credentials_in_a_base_url_become_a_header_not_part_of_any_url():
    connection = Connection(name="x", base_url="http://ollama%40lab:s3cr%3At@10.0.0.5:11434/")
    assert connection.root_url == "http://10.0.0.5:11434"
    assert connection.auth_headers() == {"Authorization": "Basic b2xsYW1hQGxhYjpzM2NyOnQ="}
    connection.api_key = KEY  # a key, when set, is what authenticates
    assert connection.auth_headers() == {"Authorization": f"Bearer {KEY}"}
    ipv6 = Connection(name="y", base_url="https://u:p@[fd00::5]:8443/v1")
    assert ipv6.root_url == "https://[fd00::5]:8443/v1"
