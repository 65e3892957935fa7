"""A spent budget is a 429 that tells clients not to retry (in-process: settings differ)."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from accounts.models import ApiKey, User
from chatsite.redis import get_redis
from tests.api.wire import USER
from usage.services import spent_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spent(member: User, upstream: object, settings: pytest.FixtureRequest) -> str:
    """A member key whose owner used today's whole token budget."""
    settings.QUOTAS = {
        **settings.QUOTAS,
        "member": {**settings.QUOTAS["member"], "tokens_per_day": 100},
    }
    get_redis().set(spent_key(member.pk), 100, ex=3600)
    return ApiKey.issue(member, "k")[1]


async def test_a_spent_budget_is_insufficient_quota_without_retry(spent: str) -> None:
    client = AsyncClient()
    headers = {"Authorization": f"Bearer {spent}"}
    response = await client.post(
        "/v1/chat/completions",
        {"model": "llama3.2:latest", "messages": USER},
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == error["code"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false"
    assert int(response.headers["retry-after"]) >= 1
    native = await client.post(
        "/api/chat",
        {"model": "llama3.2:latest", "messages": USER},
        content_type="application/json",
        headers=headers,
    )
    assert native.status_code == 429 and "quota" in native.json()["error"]
