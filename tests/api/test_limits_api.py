"""Limits on the API door, against live Daphne workers: a budget holds under a burst across
two workers, an admin's change applies to the next request, a refused model is a 404, and the
official clients see 429s that name the limit and x-ratelimit-* headers that count down."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest
from django.contrib.auth.models import Group
from django.db.models import F, Sum
from django.test import Client

from accounts.models import ApiKey, GroupLimits, PersonLimits, User
from llm.tokens import estimate_prompt_tokens
from tests import live
from tests.api.wire import USER
from tests.mock_upstream import MockUpstream
from usage import limits
from usage.models import Generation
from usage.services import REPLY_RESERVE

pytestmark = pytest.mark.django_db(transaction=True)

RESET = re.compile(r"^(\d+h)?(\d+m)?\d+s$|^\d+ms$")
RATE_HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for kind in ("requests", "tokens")
    for what in ("limit", "remaining", "reset")
]


@pytest.fixture(scope="module")
def second_worker(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> Iterator[str]:
    """Another Daphne worker on the same database and Redis."""
    with django_db_blocker.unblock(), live.daphne() as url:
        yield url


def own_limits(user: User, **values: object) -> PersonLimits:
    """The person's own limits; what is not named is unlimited."""
    defaults = {"tokens_per_day": 0, "tokens_per_month": 0, "requests_per_minute": 0}
    row, _ = PersonLimits.objects.update_or_create(
        user=user, defaults={**defaults, "concurrent": 0, **values}
    )
    return row


def spent(user: User) -> int:
    total = Generation.objects.filter(user=user).aggregate(
        total=Sum(F("prompt_tokens") + F("completion_tokens"))
    )["total"]
    return int(total or 0)


def clear_of_minute_end() -> None:
    """Wait out the last seconds of a minute, so a test's requests share one rate window."""
    if time.time() % 60 > 54:
        time.sleep(60.5 - time.time() % 60)


def test_fifty_at_once_through_two_workers_admit_only_what_the_budget_allows(
    daphne_url: str, second_worker: str, member: User, member_key: str, upstream: MockUpstream
) -> None:
    # Each generation costs exactly what its admission reserves, so the budget of ten
    # holds ten generations, however the fifty interleave.
    reserve = estimate_prompt_tokens(USER) + REPLY_RESERVE
    upstream.script(tokens=5, prompt_tokens=reserve - 5, delay=0.01)
    own_limits(member, tokens_per_day=10 * reserve)
    body = {"model": "llama3.2:latest", "messages": USER, "stream": False}
    headers = {"Authorization": f"Bearer {member_key}"}
    start = threading.Barrier(50)

    def call(url: str) -> httpx.Response:
        with httpx.Client(headers=headers, timeout=30) as client:
            start.wait()  # all fifty go at once
            return client.post(f"{url}/api/chat", json=body)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(call, [daphne_url, second_worker] * 25))
    assert Counter(r.status_code for r in responses) == {200: 10, 429: 40}
    refused = [r for r in responses if r.status_code == 429]
    assert all("daily token quota" in r.json()["error"] for r in refused)
    assert spent(member) == 10 * reserve
    assert Generation.objects.filter(user=member).count() == 10


def test_a_limit_an_admin_changes_applies_to_the_next_request(
    daphne_url: str, member: User, member_key: str, admin: User, upstream: MockUpstream
) -> None:
    science = Group.objects.create(name="science")
    GroupLimits.objects.create(group=science, tokens_per_day=100_000)
    science.user_set.add(member)
    own_limits(member, tokens_per_day=15)  # the person's own wins over the group's
    api = httpx.Client(
        base_url=daphne_url, headers={"Authorization": f"Bearer {member_key}"}, timeout=10
    )
    body = {"model": "llama3.2:latest", "messages": USER, "stream": False}
    assert api.post("/api/chat", json=body).status_code == 200  # spends all 15
    refused = api.post("/api/chat", json=body)
    assert refused.status_code == 429 and "15 tokens per day" in refused.json()["error"]
    # The admin empties the person's own limits on their console page: the group's apply.
    console = Client()
    console.force_login(admin)
    page = console.post(f"/staff/users/{member.pk}/", {"tokens_per_day": ""})
    assert page.status_code == 302
    assert api.post("/api/chat", json=body).status_code == 200  # at once, no waiting
    # And a model taken away is refused within the limits cache's second.
    console.post(f"/staff/users/{member.pk}/", {"models": "qwen3*"})
    time.sleep(limits.CACHE_SECONDS + 0.2)
    assert api.post("/api/chat", json=body).status_code == 404
    assert api.post("/api/chat", json={**body, "model": "qwen3:8b"}).status_code == 200


def test_a_refused_model_is_a_404_and_is_not_listed(
    api: httpx.Client, member: User, upstream: MockUpstream
) -> None:
    own_limits(member, models=["qwen3*", "gpt-4o*"])
    for model in ("llama3.2:latest", "gpt-4.1"):
        native = api.post("/api/chat", json={"model": model, "messages": USER})
        assert native.status_code == 404 and native.json() == {
            "error": f"model '{model}' not found"
        }
        chat = api.post("/v1/chat/completions", json={"model": model, "messages": USER})
        assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
        assert api.get(f"/v1/models/{model}").status_code == 404
    listed = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert sorted(listed) == ["gpt-4o-mini", "qwen3:8b"]
    tags = [m["name"] for m in api.get("/api/tags").json()["models"]]
    assert sorted(tags) == ["gpt-4o-mini", "qwen3:8b"]
    assert api.post("/api/chat", json={"model": "qwen3:8b", "messages": USER}).status_code == 200


def test_a_key_cannot_widen_its_owners_models(
    daphne_url: str, member: User, upstream: MockUpstream
) -> None:
    own_limits(member, models=["qwen3*"])
    _, secret = ApiKey.issue(member, "wide", allowed_models=["llama3.2:latest", "qwen3:8b"])
    with httpx.Client(base_url=daphne_url, headers={"Authorization": f"Bearer {secret}"}) as api:
        assert (
            api.post("/api/chat", json={"model": "llama3.2:latest", "messages": USER}).status_code
            == 404
        )
        assert [m["id"] for m in api.get("/v1/models").json()["data"]] == ["qwen3:8b"]


def test_openai_client_headers_count_down_then_a_rate_limit_error_names_the_limit(
    daphne_url: str, member: User, member_key: str, upstream: MockUpstream
) -> None:
    upstream.script(tokens=5, prompt_tokens=995)  # each call costs 1,000 tokens
    own_limits(member, requests_per_minute=100, tokens_per_day=2000)
    client = openai.OpenAI(base_url=f"{daphne_url}/v1", api_key=member_key, max_retries=0)
    clear_of_minute_end()
    seen = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
        assert raw.parse().choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
        assert all(name in raw.headers for name in RATE_HEADERS)
        seen.append(raw.headers)
    first, second = seen
    assert first["x-ratelimit-limit-requests"] == "100"
    assert first["x-ratelimit-limit-tokens"] == "2000"
    assert int(second["x-ratelimit-remaining-requests"]) < int(
        first["x-ratelimit-remaining-requests"]
    )
    assert int(second["x-ratelimit-remaining-tokens"]) < int(first["x-ratelimit-remaining-tokens"])
    assert RESET.match(first["x-ratelimit-reset-requests"])
    assert RESET.match(first["x-ratelimit-reset-tokens"])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    message = refused.value.message
    assert "daily token quota" in message and "2,000 tokens per day" in message
    assert "resets at midnight UTC" in message
    assert refused.value.response.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.response.headers["x-should-retry"] == "false"


def test_ollama_client_gets_a_response_error_naming_the_limit(
    daphne_url: str, member: User, member_key: str, upstream: MockUpstream
) -> None:
    own_limits(member, requests_per_minute=2)
    client = ollama.Client(host=daphne_url, headers={"Authorization": f"Bearer {member_key}"})
    clear_of_minute_end()
    native = httpx.post(
        f"{daphne_url}/api/chat",
        json={"model": "llama3.2:latest", "messages": USER, "stream": False},
        headers={"Authorization": f"Bearer {member_key}"},
    )
    assert native.status_code == 200
    assert native.headers["x-ratelimit-limit-requests"] == "2"
    assert native.headers["x-ratelimit-remaining-requests"] == "1"
    assert "x-ratelimit-limit-tokens" not in native.headers  # no token budget applies
    assert "".join(
        c.message.content for c in client.chat(model="llama3.2:latest", messages=USER, stream=True)
    )
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model="llama3.2:latest", messages=USER)
    assert refused.value.status_code == 429
    assert "at most 2 requests per minute" in refused.value.error
    assert "It resets in" in refused.value.error


def test_a_keys_own_budget_holds_through_the_key_cache(
    daphne_url: str, member: User, upstream: MockUpstream
) -> None:
    own_limits(member, tokens_per_day=1000)
    _, secret = ApiKey.issue(member, "ci", tokens_per_day=15)
    body = {"model": "llama3.2:latest", "messages": USER, "stream": False}
    with httpx.Client(base_url=daphne_url, headers={"Authorization": f"Bearer {secret}"}) as api:
        first = api.post("/api/chat", json=body)  # 15 tokens: the key's whole day
        assert first.status_code == 200
        assert first.headers["x-ratelimit-limit-tokens"] == "15"  # the tightest budget
        refused = api.post("/v1/chat/completions", json=body)  # cached key, same budget
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert (
        "This API key's daily token quota is spent: 15 tokens per day"
        in (refused.json()["error"]["message"])
    )
