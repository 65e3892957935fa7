"""The audit log from the console: what admins do on People and Connections is recorded, and
the Audit page lists, filters, pages and exports it, for admins only."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import AsyncClient, Client
from django.urls import reverse

from accounts.models import User
from audit.models import Entry
from llm.models import Connection
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

KEY = "sk-first-key-abcdefgh1234"
NEW_KEY = "sk-other-key-ijklmnop5678"
ADDRESS = "203.0.113.7"


def only_entry(action: str) -> Entry:
    entries = list(Entry.objects.filter(action=action))
    assert len(entries) == 1, [str(entry) for entry in Entry.objects.all()]
    return entries[0]


def everything_recorded() -> str:
    """Every entry's every field, as one text to search for secrets."""
    return json.dumps(list(Entry.objects.values()), default=str)


def connection_form(**fields: object) -> dict:
    data = {
        "name": "lab",
        "kind": "openai",
        "base_url": "https://lab.example.com/v1",
        "prefix": "",
        "enabled": "on",
        "api_key": "",
        "allowed_models_text": "",
    }
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


# People -----------------------------------------------------------------------------------


def test_approving_records_who_approved_whom_from_where(admin_client: Client, admin) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    admin_client.post(reverse("console:approve", args=[waiting.pk]), REMOTE_ADDR=ADDRESS)
    entry = only_entry("account.approved")
    assert (entry.actor, entry.actor_name) == (admin, "ada")
    assert (entry.target_type, entry.target_id, entry.target_label) == (
        "user",
        str(waiting.pk),
        "yan",
    )
    assert entry.address == ADDRESS
    assert (entry.before, entry.after) == ({"role": "pending"}, {"role": "member"})


def test_approving_someone_already_in_records_nothing(admin_client: Client) -> None:
    member = make_user("zed")
    admin_client.post(reverse("console:approve", args=[member.pk]))
    assert not Entry.objects.exists()


def test_a_role_change_is_recorded_with_before_and_after(admin_client: Client) -> None:
    member = make_user("zed")
    admin_client.post(reverse("console:set_role", args=[member.pk]), {"role": "admin"})
    entry = only_entry("account.role")
    assert (entry.before, entry.after) == ({"role": "member"}, {"role": "admin"})
    # Asking for the role someone already has changes nothing and records nothing.
    admin_client.post(reverse("console:set_role", args=[member.pk]), {"role": "admin"})
    assert Entry.objects.filter(action="account.role").count() == 1


def test_a_refused_change_records_nothing(admin_client: Client, admin) -> None:
    admin_client.post(reverse("console:set_role", args=[admin.pk]), {"role": "member"})
    admin_client.post(reverse("console:set_role", args=[admin.pk]), {"role": "emperor"})
    assert not Entry.objects.exists()


def test_deactivating_and_reactivating_are_recorded(admin_client: Client) -> None:
    member = make_user("zed")
    admin_client.get(reverse("console:deactivate", args=[member.pk]))  # the question only
    assert not Entry.objects.exists()
    admin_client.post(reverse("console:deactivate", args=[member.pk]))
    admin_client.post(reverse("console:reactivate", args=[member.pk]))
    off, on = only_entry("account.deactivated"), only_entry("account.reactivated")
    assert (off.before, off.after) == ({"is_active": True}, {"is_active": False})
    assert (on.before, on.after) == ({"is_active": False}, {"is_active": True})
    assert off.target_label == on.target_label == "zed"


# Connections ------------------------------------------------------------------------------


def test_adding_a_connection_records_its_settings_but_not_its_key(admin_client: Client) -> None:
    admin_client.post(
        reverse("console:add_connection"),
        connection_form(api_key=KEY, allowed_models_text="gpt-4o*"),
        REMOTE_ADDR=ADDRESS,
    )
    entry = only_entry("connection.added")
    connection = Connection.objects.get(name="lab")
    assert (entry.target_type, entry.target_id) == ("connection", str(connection.pk))
    assert entry.after == {
        "name": "lab",
        "kind": "openai",
        "base_url": "https://lab.example.com/v1",
        "prefix": "",
        "enabled": True,
        "allowed_models": ["gpt-4o*"],
        "api_key": "stored",
    }
    assert entry.address == ADDRESS
    assert KEY[3:] not in everything_recorded()


@pytest.fixture
def lab() -> Connection:
    connection = Connection(name="lab", kind="openai", base_url="https://lab.example.com/v1")
    connection.api_key = KEY
    connection.save()
    return connection


def test_an_edit_records_only_what_changed(admin_client: Client, lab: Connection) -> None:
    admin_client.post(
        reverse("console:edit_connection", args=[lab.pk]),
        connection_form(prefix="lab/", allowed_models_text="llama3*"),
    )
    entry = only_entry("connection.changed")
    assert entry.before == {"prefix": "", "allowed_models": []}
    assert entry.after == {"prefix": "lab/", "allowed_models": ["llama3*"]}


def test_a_new_key_is_recorded_as_changed_never_as_itself(
    admin_client: Client, lab: Connection
) -> None:
    admin_client.post(
        reverse("console:edit_connection", args=[lab.pk]), connection_form(api_key=NEW_KEY)
    )
    entry = only_entry("connection.changed")
    assert (entry.before, entry.after) == ({"api_key": "stored"}, {"api_key": "changed"})
    recorded = everything_recorded()
    assert KEY[3:] not in recorded and NEW_KEY[3:] not in recorded


def test_moving_to_another_server_records_the_key_dropped(
    admin_client: Client, lab: Connection
) -> None:
    url = "https://elsewhere.example.com/v1"
    admin_client.post(
        reverse("console:edit_connection", args=[lab.pk]), connection_form(base_url=url)
    )
    entry = only_entry("connection.changed")
    assert entry.before == {"base_url": "https://lab.example.com/v1", "api_key": "stored"}
    assert entry.after == {"base_url": url, "api_key": "none"}


def test_saving_without_changes_records_nothing(admin_client: Client, lab: Connection) -> None:
    admin_client.post(reverse("console:edit_connection", args=[lab.pk]), connection_form())
    assert not Entry.objects.exists()


def test_an_invalid_edit_records_nothing(admin_client: Client, lab: Connection) -> None:
    response = admin_client.post(
        reverse("console:edit_connection", args=[lab.pk]), connection_form(base_url="nope")
    )
    assert response.status_code == 200
    assert not Entry.objects.exists()


def test_disabling_and_enabling_are_recorded(admin_client: Client, lab: Connection) -> None:
    toggle = reverse("console:toggle_connection", args=[lab.pk])
    admin_client.post(toggle)
    admin_client.post(toggle)
    off, on = only_entry("connection.disabled"), only_entry("connection.enabled")
    assert (off.before, off.after) == ({"enabled": True}, {"enabled": False})
    assert (on.before, on.after) == ({"enabled": False}, {"enabled": True})


def test_deleting_keeps_what_the_connection_was(admin_client: Client, lab: Connection) -> None:
    pk = lab.pk
    admin_client.post(reverse("console:delete_connection", args=[pk]))
    entry = only_entry("connection.deleted")
    assert not Connection.objects.filter(pk=pk).exists()
    assert (entry.target_id, entry.target_label) == (str(pk), "lab")
    assert entry.before["base_url"] == "https://lab.example.com/v1"
    assert entry.before["api_key"] == "stored" and entry.after is None
    assert KEY[3:] not in everything_recorded()


# The Audit page -----------------------------------------------------------------------------


def add_entries(count: int, **fields: object) -> None:
    for number in range(count):
        values = {"action": "account.role", "actor_name": "ada", "target_label": f"p{number}"}
        Entry.objects.create(**{**values, **fields})


def test_members_are_refused_and_visitors_sent_to_sign_in(member_client: Client) -> None:
    for name in ("console:audit", "console:audit_csv"):
        assert member_client.get(reverse(name)).status_code == 403
        response = Client().get(reverse(name))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_lists_entries_newest_first(admin_client: Client) -> None:
    zed = make_user("zed")
    admin_client.post(reverse("console:set_role", args=[zed.pk]), {"role": "admin"})
    admin_client.post(reverse("console:set_role", args=[zed.pk]), {"role": "member"})
    response = admin_client.get(reverse("console:audit"))
    assert response.status_code == 200
    entries = list(response.context["page"])
    assert [entry.after for entry in entries] == [{"role": "member"}, {"role": "admin"}]
    text = response.content.decode()
    assert "Role changed" in text and "zed" in text
    assert 'aria-current="page">Audit</a>' in text


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        ({"actor": "ADA"}, ["by-ada"]),
        ({"action": "connection.deleted"}, ["gone"]),
        ({"action": "connection"}, ["gone", "by-ada"]),
        ({"target": "by-"}, ["by-ada"]),
        ({"target": "connection:7"}, ["gone"]),
        ({"actor": "bob", "action": "connection"}, ["gone"]),
        ({"actor": "nobody"}, []),
    ],
)
def test_the_page_filters_by_actor_action_and_target(
    admin_client: Client, query: dict, labels: list[str]
) -> None:
    Entry.objects.create(action="connection.added", actor_name="ada", target_label="by-ada")
    Entry.objects.create(
        action="connection.deleted",
        actor_name="bob",
        target_type="connection",
        target_id="7",
        target_label="gone",
    )
    Entry.objects.create(action="login.throttled", target_label="mallory")
    response = admin_client.get(reverse("console:audit"), query)
    assert response.status_code == 200
    assert [entry.target_label for entry in response.context["page"]] == labels
    assert ("No entries match." in response.content.decode()) == (not labels)


@pytest.mark.parametrize(
    "query",
    [{"action": "DROP TABLE"}, {"action": "x" * 65}, {"actor": "a" * 151}, {"target": "t" * 256}],
)
def test_a_bad_filter_is_a_400_that_says_why(admin_client: Client, query: dict) -> None:
    response = admin_client.get(reverse("console:audit"), query)
    assert response.status_code == 400
    assert response.context["form"].errors
    assert admin_client.get(reverse("console:audit_csv"), query).status_code == 400


def test_the_page_is_paginated_keeping_the_filters(admin_client: Client) -> None:
    add_entries(60)
    add_entries(5, action="key.revoked")
    first = admin_client.get(reverse("console:audit"), {"action": "account.role"})
    assert len(first.context["page"]) == 50
    assert "?action=account.role&amp;page=2" in first.content.decode()
    second = admin_client.get(reverse("console:audit"), {"action": "account.role", "page": 2})
    assert len(second.context["page"]) == 10
    assert {entry.action for entry in second.context["page"]} == {"account.role"}
    # A page past the end shows the last one; nonsense shows the first.
    assert admin_client.get(reverse("console:audit"), {"page": "999"}).context["page"].number == 2
    assert admin_client.get(reverse("console:audit"), {"page": "x"}).context["page"].number == 1


@pytest.mark.django_db(transaction=True)
async def test_the_export_streams_every_matching_entry_as_csv(admin) -> None:
    await Entry.objects.acreate(
        action="connection.changed",
        actor_name="ada",
        target_type="connection",
        target_id="3",
        target_label="=HYPERLINK(evil)",
        address="198.51.100.4",
        before={"prefix": ""},
        after={"prefix": "lab/"},
    )
    # More than one chunk of the database iterator.
    await Entry.objects.abulk_create(
        Entry(action="key.created", target_label=f"k{number}") for number in range(2500)
    )
    client = AsyncClient()
    await client.aforce_login(admin)
    response = await client.get(reverse("console:audit_csv"), {"action": "connection"})
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["when", "actor", "action"]
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["target"] == "'=HYPERLINK(evil)"  # a spreadsheet reads it as text
    assert row["address"] == "198.51.100.4"
    assert json.loads(row["before"]) == {"prefix": ""}
    assert json.loads(row["after"]) == {"prefix": "lab/"}

    everything = await client.get(reverse("console:audit_csv"))
    lines = b"".join([chunk async for chunk in everything.streaming_content]).splitlines()
    assert len(lines) == 1 + 2501


def test_the_page_links_to_the_export_with_its_filters(admin_client: Client) -> None:
    add_entries(1)
    text = admin_client.get(reverse("console:audit"), {"actor": "ada", "page": "1"}).content
    assert f'{reverse("console:audit_csv")}?actor=ada"'.encode() in text


def test_entries_without_an_actor_say_whether_they_came_from_a_visitor_or_the_system(
    admin_client: Client,
) -> None:
    Entry.objects.create(action="login.throttled", target_label="mia", address="192.0.2.9")
    Entry.objects.create(action="limits.changed", target_label="team")
    text = admin_client.get(reverse("console:audit")).content.decode()
    assert "not signed in" in text and ">system<" in text
