"""Fixtures of the API tests: the mock upstream, connections to it, keys, a live Daphne."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from accounts.models import ApiKey, User
from llm.models import Connection
from tests.mock_upstream import MockUpstream


@pytest.fixture(scope="session")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
def upstream(mock: MockUpstream, transactional_db: None) -> MockUpstream:
    """The mock, reset, behind two connections: Ollama (llama3.2, qwen3) and OpenAI (gpt-*)."""
    mock.reset()
    Connection.objects.create(name="local", kind=Connection.Kind.OLLAMA, base_url=mock.url)
    Connection.objects.create(name="cloud", kind=Connection.Kind.OPENAI, base_url=mock.openai_url)
    return mock


@pytest.fixture
def member_key(member: User, upstream: MockUpstream) -> str:
    """A live key of `member` (the secret)."""
    return ApiKey.issue(member, "tests")[1]


@pytest.fixture
def admin_key(admin: User, upstream: MockUpstream) -> str:
    return ApiKey.issue(admin, "admin tests")[1]


@pytest.fixture
def api(daphne_url: str, member_key: str) -> Iterator[httpx.Client]:
    """An httpx client for the live server, authenticated as `member`."""
    with httpx.Client(
        base_url=daphne_url, headers={"Authorization": f"Bearer {member_key}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def anonymous(daphne_url: str, upstream: MockUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daphne_url, timeout=10) as client:
        yield client
