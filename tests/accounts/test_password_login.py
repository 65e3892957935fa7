"""PASSWORD_LOGIN=0: single sign-on only. Password sign-in and sign-up are hidden and refused
by every door; `manage.py signinlink` still lets an admin in when the provider is down."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from pytest_django import Settings

from accounts import signin_links
from accounts.models import User
from audit.models import Entry
from tests.accounts.sso_flow import sign_in
from tests.conftest import PASSWORD, make_user
from tests.oidc_provider import MockProvider, Person

pytestmark = pytest.mark.django_db


@pytest.fixture
def sso_only(provider: MockProvider, settings: Settings) -> MockProvider:
    settings.PASSWORD_LOGIN = False
    return provider


def session_user(client: Client) -> User | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id) if user_id else None


def test_the_login_page_offers_only_the_provider(client: Client, sso_only: MockProvider) -> None:
    make_user("mia")
    page = client.get(reverse("accounts:login"), {"next": "/usage/"})
    assert page.status_code == 200
    assert b"Sign in with Mock SSO" in page.content
    assert b'name="password"' not in page.content
    assert b"Create an account" not in page.content


def test_a_new_install_shows_the_button_not_the_sign_up(
    client: Client, sso_only: MockProvider
) -> None:
    page = client.get(reverse("accounts:login"))
    assert page.status_code == 200 and b"Sign in with Mock SSO" in page.content


def test_a_password_is_refused(client: Client, sso_only: MockProvider, member: User) -> None:
    response = client.post(reverse("accounts:login"), {"username": "mia", "password": PASSWORD})
    assert response.status_code == 403
    assert b"Password sign-in is turned off" in response.content
    assert session_user(client) is None


def test_the_django_admin_login_refuses_a_password(
    client: Client, sso_only: MockProvider, admin: User
) -> None:
    response = client.post(
        "/django-admin/login/", {"username": "ada", "password": PASSWORD, "next": "/django-admin/"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert session_user(client) is None


def test_sign_up_is_refused(client: Client, sso_only: MockProvider, member: User) -> None:
    page = client.get(reverse("accounts:signup"))
    assert page.status_code == 403
    assert b"identity provider" in page.content
    form = {"username": "eve", "password1": PASSWORD, "password2": PASSWORD}
    assert client.post(reverse("accounts:signup"), form).status_code == 403
    assert not User.objects.filter(username="eve").exists()


def test_the_provider_still_signs_people_in(client: Client, sso_only: MockProvider) -> None:
    sso_only.add(Person("sub-1", "grace", email="grace@example.com"))
    assert sign_in(client, sso_only, "grace")["Location"] == reverse("home")
    assert session_user(client).username == "grace"  # type: ignore[union-attr]


def test_password_sign_in_works_again_when_switched_back(
    client: Client, provider: MockProvider, member: User
) -> None:
    response = client.post(reverse("accounts:login"), {"username": "mia", "password": PASSWORD})
    assert response.status_code == 302
    assert session_user(client) == member


def make_link(username: str, *args: str) -> str:
    out = io.StringIO()
    call_command("signinlink", username, *args, stdout=out)
    return out.getvalue().strip()


def test_an_admin_gets_in_once_with_a_link_while_the_provider_is_down(
    client: Client, sso_only: MockProvider, admin: User
) -> None:
    sso_only.stop()
    link = make_link("ada", "--site", "https://chat.example.com/")
    assert link.startswith("https://chat.example.com/accounts/link/")
    path = link.removeprefix("https://chat.example.com")

    page = client.get(path)
    assert page.status_code == 200 and b"Sign in as ada" in page.content
    assert session_user(client) is None  # opening the link (a preview) signs no one in
    assert client.post(path)["Location"] == reverse("home")
    assert session_user(client) == admin
    assert client.get(reverse("console:people")).status_code == 200

    client.post(reverse("accounts:logout"))
    assert client.get(path).status_code == 400  # used up
    assert client.post(path).status_code == 400
    assert session_user(client) is None
    actions = set(Entry.objects.values_list("action", flat=True))
    assert {"login.link_issued", "login.link"} <= actions


def test_a_link_expires(client: Client, admin: User) -> None:
    token = signin_links.make(admin, minutes=-1)  # its time ran out a minute ago
    response = client.get(reverse("accounts:signin_link", args=[token]))
    assert response.status_code == 400
    assert b"expired or was already used" in response.content
    assert signin_links.account(signin_links.make(admin, minutes=1)) == admin


def test_a_forged_link_is_refused(client: Client, admin: User) -> None:
    token = signin_links.make(admin)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(reverse("accounts:signin_link", args=[forged])).status_code == 400
    assert client.get("/accounts/link/not-a-token/").status_code == 400


def test_links_are_only_for_active_admins(member: User, admin: User) -> None:
    with pytest.raises(CommandError, match="not an active admin"):
        make_link("mia")
    with pytest.raises(CommandError, match="no account"):
        make_link("nobody")
    token = signin_links.make(admin)
    admin.set_role(User.Role.MEMBER)
    assert signin_links.account(token) is None  # no longer an admin: the link is void
