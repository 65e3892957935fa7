"""The audit log in a real browser: an admin's approval shows on the Audit page, which filters
and exports it."""

from __future__ import annotations

import pytest

from accounts.models import User
from tests.conftest import make_user
from tests.e2e.browser import needs_chromium

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


def test_an_approval_is_listed_filtered_and_exported(signed_in, upstream) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", role=User.Role.ADMIN)
    make_user("yan", role=User.Role.PENDING)
    make_user("zed")
    page = signed_in("ada")

    page.get_by_role("link", name="Console").click()
    page.get_by_role("button", name="Approve yan").click()
    page.get_by_text("yan can now sign in and chat.").wait_for()
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Audit").click()

    row = page.locator("tbody tr").filter(has_text="Sign-up approved")
    row.wait_for()
    assert "ada" in row.inner_text() and "yan" in row.inner_text()
    assert "pending → member" in row.inner_text()

    page.get_by_label("Action").select_option("account.deactivated")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("No entries match.").wait_for()
    page.get_by_label("Action").select_option("account")  # any account action
    page.get_by_role("button", name="Filter").click()
    page.locator("tbody tr").filter(has_text="Sign-up approved").wait_for()

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith("when,actor,action")
    assert ",ada,account.approved,user," in text
