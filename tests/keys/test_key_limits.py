"""Key limits on the API keys page: a key may be given its own daily token budget, and only
the models its owner may use are offered (a key narrows, never widens)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import ApiKey, PersonLimits, User
from llm.models import Connection
from tests.mock_upstream import mock_upstream

pytestmark = pytest.mark.django_db


def test_a_key_gets_its_own_daily_budget(member_client: Client, member: User) -> None:
    response = member_client.post(reverse("keys:list"), {"name": "ci", "tokens_per_day": "5000"})
    assert response.status_code == 200
    assert ApiKey.objects.get(user=member).tokens_per_day == 5000
    member_client.post(reverse("keys:list"), {"name": "laptop"})
    assert ApiKey.objects.get(name="laptop").tokens_per_day is None


@pytest.mark.parametrize("value", ["0", "-5", "many", "10000000000000000"])
def test_a_bad_key_budget_is_refused(member_client: Client, value: str) -> None:
    response = member_client.post(reverse("keys:list"), {"name": "ci", "tokens_per_day": value})
    assert response.status_code == 200 and response.context["form"].errors["tokens_per_day"]
    assert not ApiKey.objects.exists()


def test_only_the_owners_models_are_offered(member_client: Client, member: User) -> None:
    PersonLimits.objects.create(user=member, models=["qwen3*"])
    with mock_upstream() as mock:
        Connection.objects.create(name="local", base_url=mock.url)
        page = member_client.get(reverse("keys:list")).content.decode()
        assert 'value="qwen3:8b"' in page and 'value="llama3.2:latest"' not in page
        response = member_client.post(
            reverse("keys:list"), {"name": "wide", "models": ["llama3.2:latest"]}
        )
    assert response.context["form"].errors["models"]
    assert not ApiKey.objects.exists()
