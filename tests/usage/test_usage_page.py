"""The person's Usage page: their own budgets, chart, doors, generations and CSV, no one else's."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings

from accounts.models import ApiKey, User
from tests.conftest import make_user
from usage import rollups
from usage.models import Generation

pytestmark = pytest.mark.django_db

BUDGET = {
    "member": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 1000},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}


def charge(user: User, *, key: ApiKey | None = None, days_ago: int = 0, **fields: object) -> None:
    fields = {"model": "llama3", "status": "ok", "prompt_tokens": 0, "completion_tokens": 0,
              "ttft_ms": None, "duration_ms": 1000, **fields}  # fmt: skip
    rollups.record(
        user=user,
        api_key=key,
        door="api" if key else "web",
        started_at=datetime.now(UTC) - timedelta(days=days_ago),
        **fields,
    )


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    """The page's visible text, roughly: tags dropped, whitespace folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def download(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith("attachment;")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def laptop(member: User) -> ApiKey:
    return ApiKey.issue(member, "laptop")[0]


@pytest.fixture
def usage(member: User, laptop: ApiKey) -> None:
    """mia: browser and key use today, older use; bob: use of his own."""
    charge(member, model="llama3", prompt_tokens=100, completion_tokens=23, ttft_ms=400)
    charge(member, model="qwen3", completion_tokens=7, status="stopped", ttft_ms=800)
    charge(member, key=laptop, model="llama3", prompt_tokens=300, completion_tokens=200,
           ttft_ms=120, duration_ms=2500)  # fmt: skip
    charge(member, key=laptop, model="llama3", status="error", error="upstream down")
    charge(member, model="llama3", prompt_tokens=5000, days_ago=40)  # before the 30 days
    bob = make_user("bob")
    charge(bob, model="bobs-secret-model", prompt_tokens=99999)


@override_settings(QUOTAS=BUDGET)
def test_a_person_sees_their_budgets_chart_and_doors(member_client: Client, usage: None) -> None:
    response = member_client.get("/usage/")
    assert response.status_code == 200
    text = text_of(response)
    assert "630 of 1,000 tokens (63.0%)" in text  # 123 + 7 + 500 today
    assert "This month 630 tokens" in text  # 40 days ago is always in an earlier month
    assert "bobs-secret-model" not in text and "99,999" not in text
    page = response.content.decode()
    chart = re.search(r"<svg.*?</svg>", page, re.S)[0]
    assert page.count("<svg") == 1 and "<script" not in chart
    assert 'role="img"' in page
    models = re.search(r'<table class="table" id="table-models">.*?</table>', page, re.S)[0]
    assert re.search(r"llama3.*?<td[^>]*>3</td><td[^>]*>623</td>", models, re.S)
    doors = re.search(r'<table class="table" id="table-doors">.*?</table>', page, re.S)[0]
    laptop_row = re.search(r"laptop \(cs-….{4}\).*?</tr>", doors, re.S)[0]
    # 2 requests, 500 tokens, half failed, none stopped, median TTFT inside 100-150 ms
    assert re.findall(r"<td[^>]*>([^<]*)</td>", laptop_row)[:4] == ["2", "500", "50.0%", "0.0%"]
    assert "Browser" in doors


def test_the_generations_list_shows_every_door_and_filters_by_one(
    member_client: Client, usage: None, laptop: ApiKey
) -> None:
    everything = text_of(member_client.get("/usage/"))
    assert "5 in all" in everything  # the 40-day-old one too: the ledger, not the chart
    through_key = member_client.get("/usage/", {"door": f"key-{laptop.pk}"})
    text = text_of(through_key)
    assert "2 in all" in text and "Failed" in text and "120 ms" in text
    web = text_of(member_client.get("/usage/", {"door": "web"}))
    assert "3 in all" in web and "Stopped" in web and "800 ms" in web


@pytest.mark.parametrize("door", ["bogus", "key-", "key-x1", "key-" + "9" * 30, "api"])
def test_an_unknown_door_is_a_400(member_client: Client, door: str) -> None:
    response = member_client.get("/usage/", {"door": door})
    assert response.status_code == 400
    assert b"Unknown door" in response.content
    assert member_client.get("/usage/export/", {"door": door}).status_code == 400


def test_someone_elses_key_shows_nothing(member_client: Client, usage: None) -> None:
    bobs_key = ApiKey.issue(User.objects.get(username="bob"), "bob's")[0]
    charge(User.objects.get(username="bob"), key=bobs_key, prompt_tokens=5)
    response = member_client.get("/usage/", {"door": f"key-{bobs_key.pk}"})
    assert response.status_code == 200
    assert "No generations through this door yet." in text_of(response)


def test_generations_are_paginated(member_client: Client, member: User) -> None:
    for index in range(55):
        charge(member, prompt_tokens=index)
    first, second = member_client.get("/usage/"), member_client.get("/usage/", {"page": 2})
    assert "Page 1 of 2" in text_of(first) and "Page 2 of 2" in text_of(second)
    assert text_of(second).count("Completed") == 5
    assert member_client.get("/usage/", {"page": "nope"}).status_code == 200


def test_an_empty_usage_page(member_client: Client) -> None:
    response = member_client.get("/usage/")
    assert response.status_code == 200
    text = text_of(response)
    assert "No generations in the last 30 days" in text
    assert "No generations yet." in text
    assert "<svg" not in response.content.decode()


def test_the_csv_export_holds_only_the_persons_generations(
    member_client: Client, usage: None, laptop: ApiKey
) -> None:
    rows = download(member_client.get("/usage/export/"))
    assert rows[0][:4] == ["started (UTC)", "door", "model", "status"]
    assert len(rows) == 6
    assert {row[2] for row in rows[1:]} == {"llama3", "qwen3"}
    keyed = download(member_client.get("/usage/export/", {"door": f"key-{laptop.pk}"}))
    assert [row[3] for row in keyed[1:]] == ["error", "ok"]
    assert keyed[2][4:] == ["300", "200", "120", "2500"]
    models = download(member_client.get("/usage/export/", {"table": "models"}))
    assert models[0] == ["Model", "Requests", "Tokens", "Share"]
    assert models[1][:3] == ["llama3", "3", "623"]


def test_a_csv_cell_a_spreadsheet_would_run_is_quoted(member_client: Client, member: User) -> None:
    key = ApiKey.issue(member, "=HYPERLINK(1)")[0]
    charge(member, key=key, prompt_tokens=1)
    rows = download(member_client.get("/usage/export/", {"table": "doors"}))
    assert rows[1][0].startswith("'=HYPERLINK(1)")


def test_an_unknown_table_is_a_400(member_client: Client) -> None:
    response = member_client.get("/usage/export/", {"table": "everyone"})
    assert response.status_code == 400 and b"Unknown table" in response.content


def test_the_usage_page_needs_a_sign_in(client: Client) -> None:
    for path in ("/usage/", "/usage/export/"):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_top_bar_links_to_the_usage_page(member_client: Client) -> None:
    assert b'href="/usage/"' in member_client.get("/keys/").content


def test_generation_rows_come_from_the_ledger(member: User) -> None:
    charge(member, prompt_tokens=3, ttft_ms=10)
    assert Generation.objects.get().ttft_ms == 10
