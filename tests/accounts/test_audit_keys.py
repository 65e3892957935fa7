"""Key and account changes outside the console reach the audit log: a person creating and
revoking their keys, and admins acting in Django admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from accounts.models import ApiKey, User
from audit.models import Entry
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_creating_a_key_records_its_owner_and_settings_never_its_secret(
    member_client: Client, member: User
) -> None:
    response = member_client.post(reverse("keys:list"), {"name": "laptop"}, REMOTE_ADDR="10.1.2.3")
    secret = response.context["secret"]
    key = ApiKey.objects.get(user=member)
    entry = Entry.objects.get()
    assert entry.action == "key.created"
    assert (entry.actor, entry.address) == (member, "10.1.2.3")
    assert (entry.target_type, entry.target_id) == ("apikey", str(key.pk))
    settings = {"owner": "mia", "name": "laptop", "models": [], "expires_at": None}
    assert {name: entry.after[name] for name in settings} == settings
    recorded = str(list(Entry.objects.values()))
    assert secret[3:] not in recorded and key.digest not in recorded


def test_revoking_a_key_records_who_and_when(member_client: Client, member: User) -> None:
    key, _ = ApiKey.issue(member, "laptop")
    member_client.get(reverse("keys:revoke", args=[key.pk]))  # the question only
    assert not Entry.objects.exists()
    member_client.post(reverse("keys:revoke", args=[key.pk]))
    member_client.post(reverse("keys:revoke", args=[key.pk]))  # already revoked
    entry = Entry.objects.get()
    key.refresh_from_db()
    assert (entry.action, entry.actor) == ("key.revoked", member)
    assert entry.before == {"revoked_at": None}
    revoked_at = parse_datetime(entry.after["revoked_at"])  # JSON keeps milliseconds
    assert abs(revoked_at - key.revoked_at) < timedelta(milliseconds=1)


def test_someone_elses_key_is_a_404_and_records_nothing(member_client: Client) -> None:
    other, _ = ApiKey.issue(make_user("zed"), "theirs")
    assert member_client.post(reverse("keys:revoke", args=[other.pk])).status_code == 404
    assert not Entry.objects.exists()


def test_an_admin_revoking_in_django_admin_is_recorded(admin_client: Client, admin: User) -> None:
    key, _ = ApiKey.issue(make_user("zed"), "theirs")
    admin_client.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    entry = Entry.objects.get()
    assert (entry.action, entry.actor, entry.target_id) == ("key.revoked", admin, str(key.pk))


def test_approving_in_django_admin_is_recorded(admin_client: Client, admin: User) -> None:
    waiting = make_user("yan", role=User.Role.PENDING)
    admin_client.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "approve", "_selected_action": [waiting.pk]},
    )
    entry = Entry.objects.get()
    assert (entry.action, entry.actor, entry.target_label) == ("account.approved", admin, "yan")
    assert (entry.before, entry.after) == ({"role": "pending"}, {"role": "member"})


def test_role_and_active_changes_in_the_user_form_are_recorded(
    admin_client: Client, admin: User
) -> None:
    person = make_user("zed")
    form = (
        admin_client.get(reverse("admin:accounts_user_change", args=[person.pk]))
        .context["adminform"]
        .form
    )
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        {
            "username": "zed",
            "role": "admin",
            "is_active": "",
            "date_joined_0": person.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": person.date_joined.strftime("%H:%M:%S"),
            "groups": [],
            "user_permissions": [],
        }
    )
    data = {name: value for name, value in data.items() if name not in ("last_login", "password")}
    response = admin_client.post(reverse("admin:accounts_user_change", args=[person.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    entries = {entry.action: entry for entry in Entry.objects.all()}
    assert set(entries) == {"account.role", "account.deactivated"}
    assert entries["account.role"].after == {"role": "admin"}
    assert entries["account.deactivated"].before == {"is_active": True}
    assert all(entry.actor == admin for entry in entries.values())
