"""Fixtures for the engine's tests: a mock upstream and connections pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from llm.events import Event
from llm.models import Connection
from tests.mock_upstream import MockUpstream

API_KEY = "sk-test-0123456789"


@pytest.fixture
def mock() -> Iterator[MockUpstream]:
    """A fresh mock upstream (Ollama at mock.url, OpenAI at mock.openai_url, key required)."""
    with MockUpstream(api_key=API_KEY) as upstream:
        yield upstream


@pytest.fixture
def local(mock: MockUpstream, transactional_db: None) -> Connection:
    """An Ollama connection to the mock: llama3.2:latest, qwen3:8b."""
    return Connection.objects.create(name="local", kind="ollama", base_url=mock.url)


@pytest.fixture
def cloud(mock: MockUpstream, transactional_db: None) -> Connection:
    """An OpenAI connection to the mock: gpt-4o-mini, gpt-4.1."""
    connection = Connection(name="cloud", kind="openai", base_url=mock.openai_url)
    connection.api_key = API_KEY
    connection.save()
    return connection


@pytest.fixture
def both(local: Connection, cloud: Connection) -> tuple[Connection, Connection]:
    return local, cloud


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    """Every event of a stream."""
    return [event async for event in events]
