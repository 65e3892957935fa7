"""Operations on connections that span more than one model instance."""

from __future__ import annotations

from django.conf import settings

from llm.models import Connection, same_server


def sync_default_connections() -> str:
    """Create or update the "ollama" and "openai" connections from the environment."""
    done = []
    if settings.OLLAMA_BASE_URL:
        done.append(_sync("ollama", Connection.Kind.OLLAMA, settings.OLLAMA_BASE_URL, None))
    if settings.OPENAI_BASE_URL:
        key = settings.OPENAI_API_KEY
        done.append(_sync("openai", Connection.Kind.OPENAI, settings.OPENAI_BASE_URL, key))
    if not done:
        return "connections: no default upstream configured"
    return "connections: " + ", ".join(done)


def _sync(name: str, kind: str, base_url: str, api_key: str | None) -> str:
    connection = Connection.objects.filter(name=name).first()
    created = connection is None
    if connection is None:
        connection = Connection(name=name)
    connection.kind = kind
    moved = not created and not same_server(connection.base_url, base_url)
    connection.base_url = base_url.rstrip("/")
    if api_key is not None and (created or _stored_key(connection) != api_key):
        connection.api_key = api_key
    elif api_key is None and moved:  # a key an admin set for the old server is not sent on
        connection.api_key = ""
    connection.full_clean()
    connection.save()
    return f"{name} {'created' if created else 'updated'} ({connection.base_url})"


def _stored_key(connection: Connection) -> str | None:
    try:
        return connection.api_key
    except ValueError:  # encrypted under an older SECRET_KEY: replace it
        return None
