"""Sign-up, approval and throttling, in a real browser against a real Daphne."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from accounts.models import User
from tests.conftest import PASSWORD
from tests.e2e.browser import chromium, needs_chromium

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def accounts_browser() -> Iterator[object]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def new_page(accounts_browser, daphne_url: str):  # type: ignore[no-untyped-def]
    """Open pages in fresh browser contexts (one per person)."""
    contexts = []

    def open_page():  # type: ignore[no-untyped-def]
        context = accounts_browser.new_context(base_url=daphne_url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def sign_up(page, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()


def test_first_sign_up_is_admin_and_approves_the_next(new_page) -> None:  # type: ignore[no-untyped-def]
    founder = new_page()
    founder.goto("/")
    # A new install sends the visitor straight to sign-up.
    assert founder.url.endswith("/accounts/signup/")
    sign_up(founder, "founder")
    founder.get_by_role("link", name="People").wait_for()
    assert User.objects.get(username="founder").role == User.Role.ADMIN

    newcomer = new_page()
    sign_up(newcomer, "newcomer")
    newcomer.get_by_role("heading", name="Waiting for approval").wait_for()
    newcomer.goto("/")
    assert newcomer.url.endswith("/accounts/pending/")

    founder.goto("/staff/users/")
    founder.get_by_text("1 waiting for approval").wait_for()
    founder.get_by_role("button", name="Approve newcomer").click()
    founder.get_by_text("newcomer can now sign in and chat.").wait_for()

    newcomer.get_by_role("link", name="Check again").click()
    newcomer.wait_for_url(re.compile(r"/$"))
    assert User.objects.get(username="newcomer").role == User.Role.MEMBER


def test_repeated_wrong_passwords_are_throttled_with_a_clear_message(new_page) -> None:  # type: ignore[no-untyped-def]
    User.objects.create_superuser("owner", "", PASSWORD)
    page = new_page()
    for _ in range(5):
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("owner")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("do not match").wait_for()
    page.get_by_label("Username").fill("owner")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").get_by_text("Too many failed sign-in attempts").wait_for()
    assert "/accounts/login/" in page.url
