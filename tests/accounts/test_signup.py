from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def signup(client: Client, username: str, password: str = PASSWORD, **extra: str):
    data = {"username": username, "password1": password, "password2": password, **extra}
    return client.post(reverse("accounts:signup"), data)


def test_the_first_account_becomes_admin(client: Client) -> None:
    response = signup(client, "first")
    assert response.status_code == 302
    assert User.objects.get(username="first").role == User.Role.ADMIN
    assert User.objects.get(username="first").is_staff


def test_in_approval_mode_a_later_account_waits(client: Client, admin: User) -> None:
    response = signup(client, "newbie")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:pending")
    assert User.objects.get(username="newbie").role == User.Role.PENDING


def test_a_pending_account_sees_the_waiting_page_everywhere(client: Client, admin: User) -> None:
    signup(client, "newbie")
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:pending")
    page = client.get(reverse("accounts:pending"))
    assert b"Waiting for approval" in page.content


@override_settings(SIGNUP_MODE="open")
def test_in_open_mode_a_later_account_is_a_member(client: Client, admin: User) -> None:
    signup(client, "newbie")
    assert User.objects.get(username="newbie").role == User.Role.MEMBER
    response = client.get(reverse("home"), follow=True)
    assert response.status_code == 200
    assert reverse("accounts:pending") not in [url for url, _ in response.redirect_chain]


@override_settings(SIGNUP_MODE="closed")
def test_in_closed_mode_sign_up_is_refused(client: Client, admin: User) -> None:
    response = signup(client, "newbie")
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not User.objects.filter(username="newbie").exists()


@override_settings(SIGNUP_MODE="closed")
def test_in_closed_mode_the_very_first_account_can_still_be_made(client: Client) -> None:
    signup(client, "founder")
    assert User.objects.get(username="founder").role == User.Role.ADMIN


def test_a_duplicate_username_gets_a_clear_message(client: Client) -> None:
    make_user("taken")
    response = signup(client, "Taken")
    assert response.status_code == 200
    assert b"That username is taken" in response.content


def test_mismatched_passwords_are_explained_and_the_username_kept(client: Client) -> None:
    response = client.post(
        reverse("accounts:signup"),
        {"username": "kim", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )
    assert response.status_code == 200
    assert b"didn" in response.content  # "The two password fields didn't match."
    assert b'value="kim"' in response.content


def test_an_over_long_username_is_refused_with_a_message(client: Client) -> None:
    response = signup(client, "u" * 500)
    assert response.status_code == 200
    assert b"at most 150 characters" in response.content
    assert not User.objects.exists()


def test_an_over_long_password_is_refused_with_a_message(client: Client) -> None:
    response = signup(client, "kim", password="p" * 5000)
    assert response.status_code == 200
    assert b"at most 1024 characters" in response.content


def test_a_weak_password_is_refused(client: Client) -> None:
    response = signup(client, "kim", password="password")
    assert response.status_code == 200
    assert b"too common" in response.content


def test_a_post_without_csrf_token_gets_a_readable_page() -> None:
    client = Client(enforce_csrf_checks=True)
    response = signup(client, "kim")
    assert response.status_code == 403
    assert b"This form has expired" in response.content
    assert not User.objects.exists()
