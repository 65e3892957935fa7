"""API keys at the door: wrong, missing, revoked, expired, out of scope, someone else's."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts.models import ApiKey, User
from tests.api.wire import USER, ndjson_lines
from tests.conftest import make_user
from usage.models import Generation

pytestmark = pytest.mark.django_db(transaction=True)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def status_of(client: httpx.Client, secret: str) -> tuple[int, int]:
    """(Ollama door, OpenAI door) status codes for a request made with `secret`."""
    native = client.get("/api/tags", headers=bearer(secret)).status_code
    openai = client.get("/v1/models", headers=bearer(secret)).status_code
    return native, openai


@pytest.mark.parametrize(
    "header", ["", "Bearer", "Basic dXNlcjpwYXNz", "Token cs-x", "Bearer cs-nope"]
)
def test_a_missing_or_wrong_key_is_refused(anonymous: httpx.Client, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    assert anonymous.get("/api/tags", headers=headers).status_code == 401
    assert anonymous.get("/v1/models", headers=headers).status_code == 401


def test_a_revoked_key_is_refused_at_once(anonymous: httpx.Client, member: User) -> None:
    key, secret = ApiKey.issue(member, "soon revoked")
    assert status_of(anonymous, secret) == (200, 200)
    key.revoke()
    assert status_of(anonymous, secret) == (401, 401)


def test_an_expired_key_is_refused(anonymous: httpx.Client, member: User) -> None:
    expires_at = timezone.now() + timedelta(seconds=1)
    _, secret = ApiKey.issue(member, "short", expires_at=expires_at)
    assert status_of(anonymous, secret) == (200, 200)  # now cached by digest
    time.sleep(max((expires_at - timezone.now()).total_seconds(), 0) + 0.05)
    assert status_of(anonymous, secret) == (401, 401)


def test_shortening_a_key_s_expiry_takes_effect_at_once(
    anonymous: httpx.Client, member: User
) -> None:
    key, secret = ApiKey.issue(member, "short", expires_at=timezone.now() + timedelta(hours=1))
    assert status_of(anonymous, secret) == (200, 200)
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save()
    assert status_of(anonymous, secret) == (401, 401)


def test_keys_of_pending_or_deactivated_accounts_are_refused(
    anonymous: httpx.Client, member: User
) -> None:
    _, secret = ApiKey.issue(member, "k")
    member.is_active = False
    member.save()
    assert status_of(anonymous, secret) == (401, 401)
    waiting = make_user("pat", role=User.Role.PENDING)
    _, pending_secret = ApiKey.issue(waiting, "k")
    assert status_of(anonymous, pending_secret) == (401, 401)


def test_a_model_outside_the_keys_list_looks_like_no_model(
    anonymous: httpx.Client, member: User
) -> None:
    _, secret = ApiKey.issue(member, "scoped", allowed_models=["qwen3:8b"])
    headers = bearer(secret)
    chat = anonymous.post(
        "/api/chat", json={"model": "llama3.2:latest", "messages": USER}, headers=headers
    )
    assert chat.status_code == 404 and chat.json() == {"error": "model 'llama3.2:latest' not found"}
    completion = anonymous.post(
        "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": USER}, headers=headers
    )
    assert completion.status_code == 404
    assert completion.json()["error"]["code"] == "model_not_found"
    assert anonymous.get("/v1/models/gpt-4o-mini", headers=headers).status_code == 404
    assert (
        anonymous.post("/api/show", json={"model": "gpt-4.1"}, headers=headers).status_code == 404
    )
    tags = anonymous.get("/api/tags", headers=headers).json()["models"]
    assert [m["name"] for m in tags] == ["qwen3:8b"]
    models = anonymous.get("/v1/models", headers=headers).json()["data"]
    assert [m["id"] for m in models] == ["qwen3:8b"]
    allowed = anonymous.post(
        "/api/chat", json={"model": "qwen3:8b", "messages": USER}, headers=headers
    )
    assert ndjson_lines(allowed.content)[-1]["done"] is True


def test_usage_is_charged_to_the_keys_owner_and_key_only(
    anonymous: httpx.Client, member: User, admin: User
) -> None:
    member_key, member_secret = ApiKey.issue(member, "m")
    admin_key, admin_secret = ApiKey.issue(admin, "a")
    anonymous.post(
        "/api/chat",
        json={"model": "llama3.2:latest", "messages": USER, "stream": False},
        headers=bearer(member_secret),
    )
    anonymous.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": USER},
        headers=bearer(admin_secret),
    )
    rows = {
        (g.user_id, g.api_key_id, g.model, g.door, g.status, g.prompt_tokens, g.completion_tokens)
        for g in Generation.objects.all()
    }
    assert rows == {
        (member.pk, member_key.pk, "llama3.2:latest", "api", "ok", 10, 5),
        (admin.pk, admin_key.pk, "gpt-4o-mini", "api", "ok", 10, 5),
    }


def test_a_refused_generation_still_frees_its_concurrency_slot(
    anonymous: httpx.Client, member: User, upstream
) -> None:
    _, secret = ApiKey.issue(member, "k")
    upstream.script(status=500)
    for _ in range(6):  # more than the member's 4 concurrent slots
        response = anonymous.post(
            "/api/chat", json={"model": "llama3.2:latest", "messages": USER}, headers=bearer(secret)
        )
        assert response.status_code == 502
    assert Generation.objects.filter(status="error").count() == 6


def test_last_used_is_recorded_at_most_once_a_minute(anonymous: httpx.Client, member: User) -> None:
    key, secret = ApiKey.issue(member, "k")
    assert key.last_used_at is None
    anonymous.get("/api/version", headers=bearer(secret))
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    anonymous.get("/api/version", headers=bearer(secret))
    key.refresh_from_db()
    assert key.last_used_at == first


def test_a_deleted_key_or_a_deleted_owner_s_key_is_refused_at_once(
    anonymous: httpx.Client, member: User
) -> None:
    key, secret = ApiKey.issue(member, "to delete")
    assert status_of(anonymous, secret) == (200, 200)  # now cached by digest
    ApiKey.objects.filter(pk=key.pk).delete()  # a bulk delete, as the admin's action does
    assert status_of(anonymous, secret) == (401, 401)

    other = make_user("pat")
    _, other_secret = ApiKey.issue(other, "theirs")
    assert status_of(anonymous, other_secret) == (200, 200)
    other.delete()
    assert status_of(anonymous, other_secret) == (401, 401)


def test_narrowing_a_key_s_models_takes_effect_at_once(
    anonymous: httpx.Client, member: User
) -> None:
    key, secret = ApiKey.issue(member, "narrowed")
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"model": "llama3.2:latest", "messages": USER, "stream": False}
    assert anonymous.post("/api/chat", json=body, headers=headers).status_code == 200
    key.allowed_models = ["gpt-4o-mini"]
    key.save()
    assert anonymous.post("/api/chat", json=body, headers=headers).status_code == 404
