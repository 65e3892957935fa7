"""Audit entries: what `record` keeps, that secrets never reach an entry, and that nobody can
change or delete an entry through the app (the model, its querysets, Django admin)."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.models import ApiKey, User
from audit import services
from audit.models import AppendOnly, Entry
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def request_from(address: str, user: object = None):
    request = RequestFactory().post("/", REMOTE_ADDR=address)
    request.user = user or AnonymousUser()
    return request


def test_the_actor_and_address_come_from_the_request(admin: User) -> None:
    member = make_user("zed")
    entry = services.record(request_from("2001:db8::1", admin), "account.role", member)
    entry.refresh_from_db()
    assert (entry.actor, entry.actor_name) == (admin, "ada")
    assert (entry.target_type, entry.target_id, entry.target_label) == (
        "user",
        str(member.pk),
        "zed",
    )
    assert entry.address == "2001:db8::1"
    assert entry.when is not None


def test_an_explicit_actor_wins_and_no_request_means_no_address(admin: User) -> None:
    entry = services.record(None, "key.revoked", "a label", actor=admin)
    assert (entry.actor_name, entry.address, entry.target_type) == ("ada", None, "")
    assert entry.target_label == "a label"
    anonymous = services.record(request_from("192.0.2.1"), "login.throttled", "mia")
    assert anonymous.actor is None and anonymous.actor_name == ""


@pytest.mark.parametrize("action", ["", "role", "Account.Role", "account.", "account role"])
def test_actions_are_dotted_names(admin: User, action: str) -> None:
    with pytest.raises(ValueError, match="dotted"):
        services.record(None, action, actor=admin)
    assert not Entry.objects.exists()


def test_values_before_and_after_keep_their_json_types(admin: User) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5)
    entry = services.record(
        None,
        "limits.changed",
        "g",
        actor=admin,
        before={"tokens_per_day": None, "models": []},
        after={"tokens_per_day": 1000, "models": ["llama3*"], "at": when},
    )
    entry.refresh_from_db()
    assert entry.before == {"tokens_per_day": None, "models": []}
    assert entry.after == {
        "tokens_per_day": 1000,
        "models": ["llama3*"],
        "at": "2026-01-02T03:04:05",
    }
    assert entry.changes() == [
        ("at", None, "2026-01-02T03:04:05"),
        ("models", [], ["llama3*"]),
        ("tokens_per_day", None, 1000),
    ]


def test_secrets_never_reach_an_entry(admin: User) -> None:
    key, secret = ApiKey.issue(admin, "laptop")
    entry = services.record(
        None,
        "connection.changed",
        f"note {secret}",
        actor=admin,
        before={"api_key": "sk-plain-secret-value", "password": "hunter2", "key": "stored"},
        after={
            "api_key": "changed",
            "note": f"Bearer {secret}",
            "nested": {"secret": "s3cr3t", "list": [secret]},
            "digest": key.digest,
        },
    )
    entry.refresh_from_db()
    text = str([entry.target_label, entry.before, entry.after])
    for leaked in (secret[3:], "plain-secret-value", "hunter2", "s3cr3t", key.digest):
        assert leaked not in text
    assert entry.before == {"api_key": "(changed)", "password": "(changed)", "key": "stored"}
    assert entry.after["api_key"] == "changed"


def test_deleting_the_actor_keeps_their_name() -> None:
    gone = make_user("gone", role=User.Role.ADMIN)
    entry = services.record(None, "account.role", "x", actor=gone)
    gone.delete()
    entry.refresh_from_db()
    assert entry.actor is None and entry.actor_name == "gone"


def test_an_entry_cannot_be_changed_or_deleted_through_the_model(admin: User) -> None:
    entry = services.record(None, "account.role", "x", actor=admin)
    entry.action = "account.approved"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    with pytest.raises(AppendOnly):
        Entry.objects.filter(pk=entry.pk).update(action="account.approved")
    with pytest.raises(AppendOnly):
        Entry.objects.all().delete()
    assert Entry.objects.get().action == "account.role"


def test_django_admin_shows_entries_but_cannot_add_change_or_delete_them(
    admin_client: Client, admin: User
) -> None:
    entry = services.record(None, "account.role", "zed", actor=admin, after={"role": "admin"})
    listing = admin_client.get(reverse("admin:audit_entry_changelist"))
    assert listing.status_code == 200 and b"zed" in listing.content
    assert b"delete_selected" not in listing.content
    view = admin_client.get(reverse("admin:audit_entry_change", args=[entry.pk]))
    assert view.status_code == 200
    assert b'name="_save"' not in view.content  # read-only: no form to submit
    assert admin_client.get(reverse("admin:audit_entry_add")).status_code == 403
    changed = admin_client.post(
        reverse("admin:audit_entry_change", args=[entry.pk]), {"action": "account.approved"}
    )
    assert changed.status_code == 403
    deleted = admin_client.post(
        reverse("admin:audit_entry_delete", args=[entry.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    bulk = admin_client.post(
        reverse("admin:audit_entry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert Entry.objects.get().action == "account.role"
