"""The API keys page: create (shown once), list, revoke with confirmation, ownership."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, User
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_the_page_needs_a_sign_in() -> None:
    response = Client().get(reverse("keys:list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_creating_a_key_shows_the_secret_once_with_snippets(
    member_client: Client, member: User
) -> None:
    response = member_client.post(reverse("keys:list"), {"name": "laptop"})
    assert response.status_code == 200
    secret = response.context["secret"]
    key = ApiKey.objects.get(user=member)
    assert key.digest == ApiKey.digest_of(secret) and key.name == "laptop"
    text = response.content.decode()
    assert secret in text
    assert "http://testserver/api/chat" in text and "http://testserver/v1" in text
    assert 'Client(host="http://testserver"' in text and "new OpenAI" in text
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    listing = member_client.get(reverse("keys:list")).content.decode()
    assert secret not in listing and key.masked in listing and "laptop" in listing


def test_a_key_can_be_limited_in_time(member_client: Client, member: User) -> None:
    tomorrow = timezone.localdate() + timedelta(days=1)
    member_client.post(reverse("keys:list"), {"name": "ci", "expires_on": tomorrow.isoformat()})
    key = ApiKey.objects.get(user=member)
    assert timezone.localtime(key.expires_at).date() == tomorrow


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ci", "expires_on": "2000-01-01"}, "expires_on"),
        ({"name": "ci", "models": ["not-in-catalog"]}, "models"),
    ],
)
def test_invalid_forms_create_nothing(member_client: Client, data: dict, field: str) -> None:
    response = member_client.post(reverse("keys:list"), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not ApiKey.objects.exists()


def test_revoking_asks_first_then_revokes(member_client: Client, member: User) -> None:
    key, _ = ApiKey.issue(member, "old")
    url = reverse("keys:revoke", args=[key.pk])
    confirm = member_client.get(url)
    assert confirm.status_code == 200 and b"Revoke key" in confirm.content
    key.refresh_from_db()
    assert key.revoked_at is None
    assert member_client.post(url).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert b"revoked" in member_client.get(reverse("keys:list")).content


def test_someone_elses_key_is_a_404(member_client: Client) -> None:
    other, _ = ApiKey.issue(make_user("olga"), "theirs")
    url = reverse("keys:revoke", args=[other.pk])
    assert member_client.get(url).status_code == 404
    assert member_client.post(url).status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None
    assert b"theirs" not in member_client.get(reverse("keys:list")).content


def test_admins_have_the_page_too(admin_client: Client) -> None:
    assert admin_client.get(reverse("keys:list")).status_code == 200


def test_issuekey_prints_only_the_secret(member: User, capsys: pytest.CaptureFixture) -> None:
    call_command("issuekey", "mia", "--name", "robot", "--models", "a:1,b/c", "--expires-days", "3")
    secret = capsys.readouterr().out.strip()
    key = ApiKey.objects.get(digest=ApiKey.digest_of(secret))
    assert (key.name, key.allowed_models, key.user) == ("robot", ["a:1", "b/c"], member)
    assert timedelta(days=2.9) < key.expires_at - timezone.now() < timedelta(days=3.1)


def test_issuekey_refuses_unknown_and_pending_people(db: None) -> None:
    with pytest.raises(CommandError):
        call_command("issuekey", "ghost")
    make_user("pat", role=User.Role.PENDING)
    with pytest.raises(CommandError):
        call_command("issuekey", "pat")


def test_allowed_models_are_chosen_from_the_catalog(member_client: Client, member: User) -> None:
    from llm.models import Connection
    from tests.mock_upstream import mock_upstream

    with mock_upstream() as mock:
        Connection.objects.create(name="local", base_url=mock.url)
        page = member_client.get(reverse("keys:list")).content.decode()
        assert 'value="llama3.2:latest"' in page
        response = member_client.post(
            reverse("keys:list"), {"name": "scoped", "models": ["qwen3:8b"]}
        )
    assert response.status_code == 200
    assert ApiKey.objects.get(user=member).allowed_models == ["qwen3:8b"]
