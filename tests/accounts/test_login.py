from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db


def login(client: Client, username: str, password: str, address: str = "10.0.0.1", **data: str):
    return client.post(
        reverse("accounts:login"),
        {"username": username, "password": password, **data},
        REMOTE_ADDR=address,
    )


def test_a_member_signs_in_and_lands_on_the_chats(client: Client, member: User) -> None:
    response = login(client, "mia", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("home")


def test_sign_in_follows_a_safe_next_url_only(client: Client, member: User) -> None:
    response = login(client, "mia", PASSWORD, next="/staff/users/")
    assert response["Location"] == "/staff/users/"
    client.logout()
    response = login(client, "mia", PASSWORD, next="https://evil.example/")
    assert response["Location"] == reverse("home")


def test_a_wrong_password_says_so(client: Client, member: User) -> None:
    response = login(client, "mia", "nope")
    assert response.status_code == 200
    assert b"do not match" in response.content


def test_a_deactivated_account_cannot_sign_in(client: Client, member: User) -> None:
    member.is_active = False
    member.save()
    response = login(client, "mia", PASSWORD)
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=3)
def test_too_many_failures_for_a_username_are_throttled(client: Client, member: User) -> None:
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert login(client, "mia", "nope", address=address).status_code == 200
    # Even the right password from a fresh address is refused while throttled.
    response = login(client, "mia", PASSWORD, address="10.0.0.4")
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert int(response["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=2, LOGIN_THROTTLE_SECONDS=1)
def test_a_throttled_username_may_try_again_once_the_window_ends(
    client: Client, member: User
) -> None:
    login(client, "mia", "nope")
    login(client, "mia", "nope")
    assert login(client, "mia", PASSWORD).status_code == 429
    time.sleep(1.5)
    assert login(client, "mia", PASSWORD).status_code == 302


@override_settings(LOGIN_ATTEMPTS_PER_ADDRESS=3, LOGIN_ATTEMPTS_PER_USERNAME=100)
def test_too_many_failures_from_one_address_are_throttled(client: Client, member: User) -> None:
    for name in ("a", "b", "c"):
        login(client, name, "nope", address="10.9.9.9")
    assert login(client, "mia", PASSWORD, address="10.9.9.9").status_code == 429
    assert login(client, "mia", PASSWORD, address="10.9.9.8").status_code == 302


@override_settings(LOGIN_ATTEMPTS_PER_USERNAME=3)
def test_a_successful_sign_in_clears_the_username_failures(client: Client, member: User) -> None:
    login(client, "mia", "nope")
    login(client, "mia", "nope")
    assert login(client, "mia", PASSWORD).status_code == 302
    client.logout()
    login(client, "mia", "nope")
    login(client, "mia", "nope")
    assert login(client, "mia", PASSWORD).status_code == 302


@override_settings(LOGIN_ATTEMPTS_PER_ADDRESS=2, LOGIN_ATTEMPTS_PER_USERNAME=100)
def test_sign_ins_that_succeed_do_not_use_up_a_shared_address(client: Client, member: User) -> None:
    for _ in range(4):  # many people behind one address sign in
        assert login(client, "mia", PASSWORD, address="10.7.7.7").status_code == 302
        client.logout()
    assert login(client, "mia", "nope", address="10.7.7.7").status_code == 200
    assert login(client, "mia", "nope", address="10.7.7.7").status_code == 200
    assert login(client, "mia", PASSWORD, address="10.7.7.7").status_code == 429


GUESSES = 40


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_passwords_are_checked_no_more_than_the_allowance(
    daphne_url: str,
) -> None:
    # The live Daphne hashes with PBKDF2: each check takes real time, as in production.
    user = make_user("mia")
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(PASSWORD, hasher.salt())
    user.save()
    path = reverse("accounts:login")
    with httpx.Client(base_url=daphne_url) as client:
        page = client.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
        cookies = dict(client.cookies)
    start = threading.Barrier(GUESSES)

    def post(password: str, together: bool = True) -> httpx.Response:
        with httpx.Client(base_url=daphne_url, cookies=cookies, timeout=100) as guesser:
            if together:
                start.wait()
            form = {"username": "mia", "password": password, "csrfmiddlewaretoken": token}
            return guesser.post(path, data=form)

    with ThreadPoolExecutor(GUESSES) as pool:
        answers = list(pool.map(post, [f"guess {i}" for i in range(GUESSES)]))
    checked = [answer for answer in answers if answer.status_code == 200]
    assert all("do not match" in answer.text for answer in checked)
    assert len(checked) == settings.LOGIN_ATTEMPTS_PER_USERNAME
    assert sum(answer.status_code == 429 for answer in answers) == GUESSES - len(checked)
    # Throttled: not even the right password is checked.
    assert post(PASSWORD, together=False).status_code == 429


def test_sign_out_needs_a_post(member_client: Client) -> None:
    assert member_client.get(reverse("accounts:logout")).status_code == 405
    response = member_client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert member_client.get(reverse("home")).status_code == 302


def test_a_member_changes_their_password(member_client: Client, member: User) -> None:
    new = "another long passphrase 42"
    response = member_client.post(
        reverse("accounts:password_change"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.check_password(new)


def test_a_wrong_old_password_is_explained(member_client: Client) -> None:
    response = member_client.post(
        reverse("accounts:password_change"),
        {"old_password": "wrong", "new_password1": "x" * 20, "new_password2": "x" * 20},
    )
    assert response.status_code == 200
    assert b"old password was entered incorrectly" in response.content


def test_pages_need_a_signed_in_user(client: Client) -> None:
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
