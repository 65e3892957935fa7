"""The console's usage page: everyone's figures over a period, for admins only, with CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import ApiKey, User
from tests.conftest import make_user
from usage import rollups

pytestmark = pytest.mark.django_db


def charge(user: User, *, key: ApiKey | None = None, days_ago: int = 0, **fields: object) -> None:
    fields = {"model": "llama3", "status": "ok", "prompt_tokens": 0, "completion_tokens": 0,
              "duration_ms": 100, **fields}  # fmt: skip
    rollups.record(
        user=user,
        api_key=key,
        door="api" if key else "web",
        started_at=datetime.now(UTC) - timedelta(days=days_ago),
        **fields,
    )


def text_of(response) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def table(response, name: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """A table of the page as rows of cell texts (the header row first)."""
    html = re.search(rf'id="table-{name}">(.*?)</table>', response.content.decode(), re.S)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    return [[re.sub(r"<[^>]+>", "", cell).strip()
             for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in rows]  # fmt: skip


def download(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def team(member: User) -> dict[str, object]:
    """mia (in "data") uses the browser and a key; bob (no group) the browser; older use."""
    bob = make_user("bob")
    data = Group.objects.create(name="data")
    member.groups.add(data)
    key = ApiKey.issue(member, "<b>laptop</b>")[0]
    charge(member, model="llama3", prompt_tokens=100, completion_tokens=100, ttft_ms=120)
    charge(member, model="llama3", prompt_tokens=50, status="stopped", ttft_ms=180)
    charge(member, key=key, model="gpt-4o", prompt_tokens=300, completion_tokens=300, ttft_ms=900)
    charge(member, key=key, model="gpt-4o", status="error")
    charge(bob, model="llama3", prompt_tokens=1000, ttft_ms=140)
    charge(bob, model="qwen3", prompt_tokens=7, days_ago=3)
    charge(bob, model="old-model", prompt_tokens=5, days_ago=45)
    return {"mia": member, "bob": bob, "key": key}


def test_the_month_by_model(admin_client: Client, team: dict) -> None:
    response = admin_client.get("/staff/usage/")
    assert response.status_code == 200
    text = text_of(response)
    # 6 requests and 1,857 tokens in the last 30 days (not the 45-day-old one)
    assert "Requests 6 Tokens 1,857" in text
    assert "Browser share of tokens 67.7%" in text and "API share of tokens 32.3%" in text
    assert "Failed 16.7% Stopped 16.7%" in text
    breakdown = table(response, "breakdown")
    assert breakdown[1][:5] == ["llama3", "3", "1,150", "100", "1,250"]
    assert breakdown[2][:5] == ["gpt-4o", "2", "300", "300", "600"]
    assert breakdown[3][:5] == ["qwen3", "1", "7", "0", "7"]
    assert "old-model" not in text
    models = {row[0]: row for row in table(response, "models")[1:]}
    # llama3: 3 requests, 1 stopped; TTFTs 120, 180, 140 ms: the median is in 100-150 ms
    assert models["llama3"][3:5] == ["0.0%", "33.3%"]
    assert 100 <= int(models["llama3"][5].split()[0]) <= 150
    assert models["gpt-4o"][3] == "50.0%" and models["qwen3"][5] == "—"
    people = table(response, "people")
    assert [row[0] for row in people[1:]] == ["bob", "mia"]
    assert people[1][1:3] == ["2", "1,007"]
    assert response.content.decode().count("<svg") == 1


def test_split_by_person_group_and_key(admin_client: Client, team: dict) -> None:
    by_person = table(admin_client.get("/staff/usage/", {"by": "person"}), "breakdown")
    assert [row[0] for row in by_person[1:]] == ["bob", "mia"]
    by_group = table(admin_client.get("/staff/usage/", {"by": "group"}), "breakdown")
    assert [row[:2] for row in by_group[1:]] == [["No group", "2"], ["data", "4"]]
    response = admin_client.get("/staff/usage/", {"by": "key"})
    by_key = {row[0]: row for row in table(response, "breakdown")[1:]}
    masked = team["key"].masked
    assert by_key["Browser"][1] == "4"
    assert by_key[f"mia: &lt;b&gt;laptop&lt;/b&gt; ({masked})"][1] == "2"
    page = response.content.decode()
    assert "<b>laptop</b>" not in page  # escaped in the table and in the chart's legend
    assert "&lt;b&gt;laptop&lt;/b&gt;" in re.search(r"<svg.*?</svg>", page, re.S)[0]


def test_today_and_a_custom_period(admin_client: Client, team: dict) -> None:
    today = text_of(admin_client.get("/staff/usage/", {"period": "day"}))
    assert "Requests 5 Tokens 1,850" in today  # bob's qwen3 was three days ago
    start = (datetime.now(UTC) - timedelta(days=50)).date()
    end = (datetime.now(UTC) - timedelta(days=2)).date()
    response = admin_client.get("/staff/usage/", {"period": "custom", "start": start, "end": end})
    assert response.status_code == 200
    assert "Requests 2 Tokens 12" in text_of(response)
    daily = table(response, "daily")
    assert len(daily) == 1 + (end - start).days + 1  # one row per day, header first


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"period": "custom"}, "needs a first and a last day"),
        ({"period": "custom", "start": "2026-02-02", "end": "2026-02-01"}, "comes before"),
        ({"period": "custom", "start": "2024-01-01", "end": "2026-01-01"}, "at most 366"),
        ({"period": "custom", "start": "yesterday", "end": "2026-01-01"}, "valid date"),
        ({"period": "year"}, "Select a valid choice"),
        ({"by": "planet"}, "Select a valid choice"),
    ],
)
def test_a_bad_period_or_split_is_a_400(admin_client: Client, query: dict, message: str) -> None:
    response = admin_client.get("/staff/usage/", query)
    assert response.status_code == 400 and message in text_of(response)
    export = admin_client.get("/staff/usage/export/", {**query, "table": "models"})
    assert export.status_code == 400 and message in export.content.decode()


def test_every_table_exports_as_csv(admin_client: Client, team: dict) -> None:
    models = download(admin_client.get("/staff/usage/export/", {"table": "models"}))
    assert models[0][:3] == ["Model", "Requests", "Tokens"]
    assert models[1][:3] == ["llama3", "3", "1250"]
    people = download(admin_client.get("/staff/usage/export/", {"table": "people"}))
    assert [row[0] for row in people[1:]] == ["bob", "mia"]
    doors = download(admin_client.get("/staff/usage/export/", {"table": "doors"}))
    assert [row[:2] for row in doors[1:]] == [["Browser", "4"], ["API", "2"]]
    daily = download(admin_client.get("/staff/usage/export/", {"table": "daily", "by": "person"}))
    assert daily[0] == ["Day (UTC)", "bob", "mia", "Total"] and len(daily) == 31
    assert daily[-1][1:] == ["1000", "850", "1850"]
    breakdown = download(
        admin_client.get("/staff/usage/export/", {"table": "breakdown", "period": "day"})
    )
    assert breakdown[1][:5] == ["llama3", "3", "1150", "100", "1250"]
    bad = admin_client.get("/staff/usage/export/", {"table": "secrets"})
    assert bad.status_code == 400 and b"Unknown table" in bad.content


def test_an_empty_period(admin_client: Client) -> None:
    response = admin_client.get("/staff/usage/")
    assert response.status_code == 200
    text = text_of(response)
    assert "No generations in this period." in text and "Requests 0 Tokens 0" in text
    assert "<svg" not in response.content.decode()
    assert download(admin_client.get("/staff/usage/export/", {"table": "people"}))[1:] == []


def test_an_admin_sees_one_persons_usage_page(admin_client: Client, team: dict) -> None:
    bob = team["bob"]
    response = admin_client.get(f"/staff/usage/people/{bob.pk}/")
    assert response.status_code == 200
    text = text_of(response)
    assert "Usage of bob" in text and "1,000 tokens" in text and "gpt-4o" not in text
    rows = download(admin_client.get(f"/staff/usage/people/{bob.pk}/export/"))
    assert sorted(row[2] for row in rows[1:]) == ["llama3", "old-model", "qwen3"]
    assert admin_client.get("/staff/usage/people/999999/").status_code == 404
    people = admin_client.get("/staff/usage/")
    assert f'href="/staff/usage/people/{bob.pk}/"' in people.content.decode()


def test_members_cannot_see_the_console_usage(member_client: Client, team: dict) -> None:
    bob = team["bob"]
    for path in (
        "/staff/usage/",
        "/staff/usage/export/?table=people",
        f"/staff/usage/people/{bob.pk}/",
        f"/staff/usage/people/{bob.pk}/export/",
    ):
        response = member_client.get(path)
        assert response.status_code == 403, path
        assert b"bob" not in response.content


def test_signed_out_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = client.get("/staff/usage/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
