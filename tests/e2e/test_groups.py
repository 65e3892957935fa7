"""Groups and limits in a real browser: an admin creates a group with a small daily budget
and a model list and adds a member; the member's picker offers only those models, and the
spent budget is shown in the chat with the limit and its reset."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from tests.conftest import make_user
from tests.e2e.browser import needs_chromium

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


def test_a_group_budget_and_model_list_reach_the_members_chat(signed_in, upstream) -> None:  # type: ignore[no-untyped-def]
    make_user("ada", role=User.Role.ADMIN)
    make_user("mia")
    admin = signed_in("ada")
    admin.goto("/staff/groups/")
    admin.get_by_role("link", name="New group").click()
    admin.get_by_label("Name").fill("interns")
    admin.get_by_label("Tokens per day").fill("15")
    admin.get_by_label("Models").fill("qwen3*")
    admin.get_by_role("button", name="Create group").click()
    admin.get_by_text("Group interns created.").wait_for()
    admin.get_by_label("Username to add").fill("mia")
    admin.get_by_role("button", name="Add member").click()
    admin.get_by_text("mia joined interns.").wait_for()
    admin.get_by_role("link", name="mia").click()
    effective = admin.locator("tr").filter(has_text="Tokens per day").first
    assert "15" in effective.inner_text() and "group interns" in effective.inner_text()

    upstream.script(tokens=5)  # 10 prompt + 5 reply tokens: the whole day
    member = signed_in("mia")
    options = member.locator("#model-picker option").evaluate_all("o => o.map(e => e.value)")
    assert options == ["qwen3:8b"]
    composer = member.get_by_label("Message", exact=True)
    composer.fill("Hello")
    composer.press("Enter")
    expect(member.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    composer.fill("Again")
    composer.press("Enter")
    refusal = member.get_by_text("You exceeded your daily token quota")
    refusal.wait_for()
    assert "15 tokens per day (group interns)" in refusal.inner_text()
