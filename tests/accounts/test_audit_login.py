"""Sign-ins refused by the throttle reach the audit log: once per burst, not once per guess."""

from __future__ import annotations

import time

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from audit.models import Entry
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client: Client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post(
        reverse("accounts:login"),
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=3)
def test_a_throttled_username_is_recorded_once_with_its_address(
    client: Client, member: User
) -> None:
    for _ in range(3):
        assert login(client, "mia", "nope").status_code == 200
    assert not Entry.objects.exists()  # plain failures are not audit events
    for _ in range(5):
        assert login(client, "mia", "nope").status_code == 429
    entry = Entry.objects.get()
    assert entry.action == "login.throttled"
    assert entry.actor is None and entry.actor_name == ""
    assert entry.target_label == "mia"
    assert entry.address == "10.0.0.1"
    assert entry.after["username"] == "mia"
    assert 0 < entry.after["retry_after"] <= 300
    assert PASSWORD not in str(entry.after) and "nope" not in str(entry.after)


@override_settings(LOGIN_ATTEMPTS_PER_ADDRESS=2, LOGIN_ATTEMPTS_PER_USERNAME=100)
def test_guessing_many_usernames_from_one_address_is_one_entry(client: Client) -> None:
    for name in ("a", "b"):
        login(client, name, "nope", address="10.9.9.9")
    for name in ("c", "d", "e", "f"):
        assert login(client, name, "nope", address="10.9.9.9").status_code == 429
    entry = Entry.objects.get()
    assert (entry.target_label, entry.address) == ("c", "10.9.9.9")


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=2, LOGIN_THROTTLE_SECONDS=1)
def test_a_new_burst_after_the_window_is_recorded_again(client: Client, member: User) -> None:
    for _ in range(2):
        login(client, "mia", "nope")
    assert login(client, "mia", "nope").status_code == 429
    time.sleep(2.1)
    for _ in range(2):
        login(client, "mia", "nope")
    assert login(client, "mia", "nope").status_code == 429
    assert Entry.objects.filter(action="login.throttled").count() == 2


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=1)
def test_an_address_that_is_no_address_is_left_empty(client: Client, member: User) -> None:
    login(client, "mia", "nope", address="not-an-ip")
    assert login(client, "mia", "nope", address="not-an-ip").status_code == 429
    assert Entry.objects.get().address is None
