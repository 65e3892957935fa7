"""A person's console page: role, groups, effective limits with their sources, what is left
today, their keys with revoke; admins set the person's own limits and groups there."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import ApiKey, GroupLimits, PersonLimits, User
from audit.models import Entry
from tests.conftest import make_user
from usage import rollups
from usage.limits import Limit, resolve

pytestmark = pytest.mark.django_db

ROLES = {
    "member": {"requests_per_minute": 60, "concurrent": 4, "tokens_per_day": 1000},
    "admin": {"requests_per_minute": 0, "concurrent": 0, "tokens_per_day": 0},
}


@pytest.fixture
def zed() -> User:
    return make_user("zed")


def page(client: Client, person: User) -> str:
    response = client.get(reverse("console:person", args=[person.pk]))
    assert response.status_code == 200
    return response.content.decode()


def row(text: str, label: str) -> str:
    start = text.index(f'<th scope="row">{label}</th>')
    return text[start : text.index("</tr>", start)]


def test_members_cannot_open_a_persons_page(member_client: Client, zed: User) -> None:
    assert member_client.get(reverse("console:person", args=[zed.pk])).status_code == 403
    response = member_client.post(reverse("console:person", args=[zed.pk]), {"tokens_per_day": 1})
    assert response.status_code == 403 and not PersonLimits.objects.exists()


@override_settings(QUOTAS=ROLES)
def test_the_page_shows_each_effective_limit_and_where_it_comes_from(
    admin_client: Client, zed: User
) -> None:
    science = Group.objects.create(name="science")
    GroupLimits.objects.create(group=science, requests_per_minute=120, models=["llama3*"])
    science.user_set.add(zed)
    PersonLimits.objects.create(user=zed, concurrent=0)
    text = page(admin_client, zed)
    assert "<td>1000</td><td>role default</td>" in row(text, "Tokens per day")
    assert "<td>120</td><td>group science</td>" in row(text, "Requests per minute")
    assert "<td>unlimited</td><td>person</td>" in row(text, "Generations at once")
    assert "llama3*" in row(text, "Models") and "group science" in row(text, "Models")
    assert reverse("console:group", args=[science.pk]) in text
    assert reverse("console:usage_person", args=[zed.pk]) in text


@override_settings(QUOTAS=ROLES)
def test_the_page_shows_what_is_left_today(admin_client: Client, zed: User) -> None:
    rollups.record(
        user_id=zed.pk,
        door="web",
        model="m",
        prompt_tokens=300,
        completion_tokens=50,
        status="ok",
        started_at=datetime.now(UTC),
    )
    today = row(page(admin_client, zed), "Today")
    assert "<td>350</td>" in today and "<td>1000</td>" in today and "<td>650</td>" in today


def test_an_admin_sets_and_clears_a_persons_own_limits(admin_client: Client, zed: User) -> None:
    url = reverse("console:person", args=[zed.pk])
    response = admin_client.post(url, {"tokens_per_day": "50", "models": "gpt-4o-mini"})
    assert response.status_code == 302
    assert resolve(zed).tokens_per_day == Limit(50, "person")
    assert resolve(zed).models == ("gpt-4o-mini",)
    admin_client.post(url, {})
    assert not PersonLimits.objects.exists()
    assert resolve(zed).tokens_per_day.source == "role default"
    changed = list(Entry.objects.filter(action="limits.changed").order_by("pk"))
    assert [(e.target_label, e.after["tokens_per_day"]) for e in changed] == [
        ("zed", 50),
        ("zed", None),
    ]


def test_bad_limits_are_shown_not_saved(admin_client: Client, zed: User) -> None:
    url = reverse("console:person", args=[zed.pk])
    response = admin_client.post(url, {"requests_per_minute": "-3"})
    assert response.status_code == 200
    assert "greater than or equal to 0" in response.content.decode()
    assert not PersonLimits.objects.exists()


def test_an_admin_sets_a_persons_groups(admin_client: Client, zed: User) -> None:
    science = Group.objects.create(name="science")
    lab = Group.objects.create(name="lab")
    url = reverse("console:person_groups", args=[zed.pk])
    admin_client.post(url, {"groups": [science.pk, lab.pk]})
    assert set(zed.groups.all()) == {science, lab}
    admin_client.post(url, {"groups": [lab.pk]})
    assert list(zed.groups.all()) == [lab]
    gone = admin_client.post(url, {"groups": ["9999"]}, follow=True)
    assert "do not exist" in gone.content.decode() and list(zed.groups.all()) == [lab]
    entries = Entry.objects.filter(action="group.members").order_by("pk")
    assert [e.after for e in entries] == [{"groups": ["lab", "science"]}, {"groups": ["lab"]}]


def test_the_page_lists_the_keys_and_an_admin_revokes_one(admin_client: Client, zed: User) -> None:
    key, _ = ApiKey.issue(zed, "ci", tokens_per_day=5000)
    text = page(admin_client, zed)
    assert "ci" in text and key.masked in text and "5000" in text
    revoke = reverse("console:revoke_key", args=[zed.pk, key.pk])
    assert "Revoke the key “ci” of zed?" in admin_client.get(revoke).content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None
    assert admin_client.post(revoke).status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    [entry] = Entry.objects.filter(action="key.revoked")
    assert entry.actor_name == "ada" and entry.after["owner"] == "zed"
    admin_client.post(revoke)  # revoking again changes and records nothing
    assert Entry.objects.filter(action="key.revoked").count() == 1


def test_another_persons_key_is_a_404(admin_client: Client, zed: User) -> None:
    other = make_user("yan")
    key, _ = ApiKey.issue(other, "ci")
    assert (
        admin_client.post(reverse("console:revoke_key", args=[zed.pk, key.pk])).status_code == 404
    )
    key.refresh_from_db()
    assert key.revoked_at is None


def test_people_link_to_their_pages(admin_client: Client, zed: User) -> None:
    text = admin_client.get(reverse("console:people")).content.decode()
    assert reverse("console:person", args=[zed.pk]) in text
