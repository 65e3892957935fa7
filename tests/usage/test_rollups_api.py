"""The API door charges its time to first token, and the rollup of the key counts it."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from tests.api.conftest import member_key, mock, upstream
from tests.api.wire import USER
from tests.mock_upstream import MockUpstream
from usage.models import DailyUsage, Generation

__all__ = ["member_key", "mock", "upstream"]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("stream", [True, False])
async def test_an_api_generation_records_its_time_to_first_token(
    upstream: MockUpstream, member_key: str, stream: bool
) -> None:
    upstream.script(ttft=0.25, tokens=3)
    response = await AsyncClient().post(
        "/api/chat",
        {"model": "llama3.2:latest", "messages": USER, "stream": stream},
        content_type="application/json",
        headers={"Authorization": f"Bearer {member_key}"},
    )
    assert response.status_code == 200
    if stream:
        b"".join([chunk async for chunk in response.streaming_content])
    row = await Generation.objects.aget()
    assert row.door == "api" and row.api_key_id is not None
    assert 250 <= row.ttft_ms <= row.duration_ms
    rollup = await DailyUsage.objects.aget()
    assert (rollup.api_key_id, rollup.requests, rollup.ttft_count, rollup.ttft_ms) == (
        row.api_key_id,
        1,
        1,
        row.ttft_ms,
    )


async def test_an_api_generation_without_a_token_has_no_time_to_first_token(
    upstream: MockUpstream, member_key: str
) -> None:
    upstream.script(status=500, error="out of memory")
    response = await AsyncClient().post(
        "/api/chat",
        {"model": "llama3.2:latest", "messages": USER, "stream": False},
        content_type="application/json",
        headers={"Authorization": f"Bearer {member_key}"},
    )
    assert response.status_code >= 500
    row = await Generation.objects.aget()
    assert row.status == "error" and row.ttft_ms is None
    rollup = await DailyUsage.objects.aget()
    assert (rollup.failed, rollup.ttft_count) == (1, 0)
