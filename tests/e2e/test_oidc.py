"""Single sign-on in a real browser: a Daphne set up for sign-in through the team's provider
only (PASSWORD_LOGIN=0), the mock OpenID Connect provider's own login page, and back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import Group

from accounts.models import ApiKey, User
from tests import live
from tests.conftest import make_user
from tests.e2e.browser import chromium, needs_chromium
from tests.oidc_provider import PASSWORD, MockProvider, Person

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]

LABEL = "Sign in with Mock SSO"


@pytest.fixture(scope="module")
def provider() -> Iterator[MockProvider]:
    with MockProvider() as mock:
        mock.interactive = True
        yield mock


@pytest.fixture(scope="module")
def sso_site(provider: MockProvider, django_db_setup: None, django_db_blocker) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A Daphne whose only sign-in is the provider's; its admins and groups come from it."""
    env = {
        "OIDC_ISSUER": provider.url,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_BUTTON_LABEL": LABEL,
        "OIDC_ADMIN_GROUPS": "chat-admins",
        "OIDC_SYNC_GROUPS": "1",
        "PASSWORD_LOGIN": "0",
        "SIGNUP_MODE": "approval",
    }
    with django_db_blocker.unblock(), live.daphne(env) as url:
        yield url


@pytest.fixture(scope="module")
def sso_browser() -> Iterator[object]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(sso_browser, sso_site: str):  # type: ignore[no-untyped-def]
    context = sso_browser.new_context(base_url=sso_site)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def test_sign_in_through_the_provider_and_out_again(  # type: ignore[no-untyped-def]
    page, provider: MockProvider, sso_site: str
) -> None:
    make_user("founder", role=User.Role.ADMIN)
    Group.objects.create(name="research")
    provider.add(
        Person(
            "sub-grace",
            "grace",
            email="grace@example.com",
            name="Grace Hopper",
            groups=["chat-admins", "research"],
        )
    )

    page.goto("/accounts/login/")
    assert page.locator("input[name=password]").count() == 0  # SSO only
    page.get_by_role("link", name=LABEL).click()
    page.get_by_role("heading", name="Mock provider sign-in").wait_for()
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(re.escape(sso_site) + r"/c/\d+/$"))

    page.get_by_role("link", name="grace", exact=True).wait_for()  # the name in the top bar
    page.get_by_role("link", name="Console").wait_for()  # an admin, from chat-admins
    grace = User.objects.get(username="grace")
    assert grace.role == User.Role.ADMIN
    page.goto(f"/staff/users/{grace.pk}/")
    page.get_by_role("link", name="research", exact=True).wait_for()  # synced from the provider
    assert [g.name for g in grace.groups.all()] == ["research"]

    # API keys do not care how their owner signs in.
    secret = ApiKey.issue(grace, "script")[1]
    models = httpx.get(f"{sso_site}/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert models.status_code == 200

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(re.escape(sso_site) + r"/accounts/login/$"))
    assert len(provider.logouts) == 1  # the provider's session ended too
    assert provider.logouts[0]["id_token_hint"].count(".") == 2
    page.get_by_role("link", name=LABEL).wait_for()
    page.goto("/")
    assert "/accounts/login/" in page.url


def test_a_wrong_provider_password_stays_at_the_provider(page, provider: MockProvider) -> None:  # type: ignore[no-untyped-def]
    provider.add(Person("sub-ivy", "ivy", email="ivy@example.com"))
    page.goto("/accounts/login/")
    page.get_by_role("link", name=LABEL).click()
    page.get_by_label("Username").fill("ivy")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("alert").get_by_text("Wrong username or password").wait_for()
    assert not User.objects.filter(username="ivy").exists()
