"""Browser-test fixtures: one headless Chromium per session, a mock upstream, sign-in."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from accounts.models import User
from llm.models import Connection
from tests.conftest import PASSWORD, make_user
from tests.e2e.browser import CHROMIUM, chromium
from tests.mock_upstream import MockUpstream


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium; browser tests skip when it is not installed.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread, which
    would break the async tests that run after the browser tests.
    """
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    with chromium() as instance:
        yield instance
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="session")
def e2e_upstream() -> Iterator[MockUpstream]:
    with MockUpstream() as mock:
        yield mock


@pytest.fixture
def upstream(e2e_upstream: MockUpstream, transactional_db: None) -> Iterator[MockUpstream]:
    """The mock, reset, with a connection the live server's catalog lists."""
    e2e_upstream.reset()
    Connection.objects.create(name="local", kind="ollama", base_url=e2e_upstream.url)
    yield e2e_upstream
    e2e_upstream.reset()


@pytest.fixture
def signed_in(browser, daphne_url: str) -> Iterator[Callable[..., object]]:  # type: ignore[no-untyped-def]
    """Sign a new member in through the login form; returns their page."""
    contexts = []

    def sign_in(username: str = "mia", *, width: int = 1200) -> object:
        if not User.objects.filter(username=username).exists():
            make_user(username)
        context = browser.new_context(base_url=daphne_url, viewport={"width": width, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/c/*/")
        return page

    yield sign_in
    for context in contexts:
        context.close()
