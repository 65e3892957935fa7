"""The Usage page and the console's usage page in Chromium, with JavaScript off: the charts
are drawn on the server and their numbers are in tables."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from accounts.models import ApiKey, User
from tests.conftest import PASSWORD, make_user
from tests.e2e.browser import chromium, needs_chromium
from usage import rollups

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def usage_browser() -> Iterator[object]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def open_as(usage_browser, daphne_url: str):  # type: ignore[no-untyped-def]
    """A page signed in as `username`, in a context without JavaScript."""
    contexts = []

    def sign_in(username: str):  # type: ignore[no-untyped-def]
        context = usage_browser.new_context(base_url=daphne_url, java_script_enabled=False)
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


@pytest.fixture
def used() -> User:
    mia = make_user("mia")
    make_user("ada", role=User.Role.ADMIN)
    key = ApiKey.issue(mia, "laptop")[0]
    now = datetime.now(UTC)
    for model, api_key, tokens in (("llama3", None, 120), ("qwen3", key, 80)):
        rollups.record(user=mia, api_key=api_key, door="api" if api_key else "web",
                       model=model, status="ok", prompt_tokens=tokens, started_at=now,
                       ttft_ms=300)  # fmt: skip
    return mia


def test_a_person_reads_their_usage_without_javascript(open_as, used: User) -> None:  # type: ignore[no-untyped-def]
    page = open_as("mia")
    page.get_by_role("link", name="Usage").click()
    page.wait_for_url("**/usage/")
    chart = page.locator("figure.usage-chart svg")
    assert chart.is_visible() and chart.bounding_box()["height"] > 100
    assert page.get_by_role("img").count() == 1
    models = page.locator("#table-models")
    assert "llama3" in models.inner_text() and "qwen3" in models.inner_text()
    page.get_by_role("link", name="laptop (cs-…").first.click()
    assert "1 in all" in page.locator("#generations ~ .table-wrap caption").inner_text()


def test_an_admin_reads_everyones_usage_without_javascript(open_as, used: User) -> None:  # type: ignore[no-untyped-def]
    page = open_as("ada")
    page.goto("/staff/usage/")
    assert page.locator("figure.usage-chart svg").is_visible()
    page.get_by_label("Split by").select_option("person")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=person**")
    breakdown = page.locator("#table-breakdown").inner_text()
    assert "mia" in breakdown and "200" in breakdown
    with page.expect_download() as download:
        page.locator("#table-models caption a").click()
    assert download.value.suggested_filename.startswith("usage-models-")
