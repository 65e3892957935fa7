"""Parameters, export and search in a real browser against a live Daphne and the mock."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_parameters_are_saved_and_sent_and_a_bad_one_is_explained(
    signed_in, upstream: MockUpstream
) -> None:
    page = signed_in()
    page.get_by_text("Parameters", exact=True).click()
    page.get_by_label("Temperature").fill("0.5")
    page.get_by_label("Seed").fill("11")
    page.locator(".parameters").get_by_role("button", name="Save").click()
    expect(page.locator("#parameters-status")).to_have_text("Saved.")
    conversation = Conversation.objects.get()
    assert (conversation.temperature, conversation.seed, conversation.top_p) == (0.5, 11, None)
    page.get_by_label("Max tokens").fill("0")
    page.get_by_label("Max tokens").evaluate("e => e.removeAttribute('min')")
    page.locator(".parameters").get_by_role("button", name="Save").click()
    expect(page.locator("#parameters-status")).to_contain_text("greater than or equal to 1")
    page.get_by_label("Max tokens").fill("")
    send(page, "Hello with settings")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    chat = next(r.body for r in upstream.requests if r.path == "/api/chat")
    assert chat["options"] == {"temperature": 0.5, "seed": 11}


def test_the_export_downloads_and_search_highlights(signed_in, upstream: MockUpstream) -> None:
    upstream.script(text="The <b>answer</b> mentions zebras.", delay=0.0)
    page = signed_in()
    send(page, "Tell me about zebras")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    page.get_by_text("Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("link", name="JSON", exact=True).click()
    data = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert [m["content"] for m in data["messages"]] == [
        "Tell me about zebras",
        "The <b>answer</b> mentions zebras.",
    ]
    assert download.value.suggested_filename.endswith(f"-{data['id']}.json")
    with page.expect_download() as everything:
        page.get_by_role("link", name="All my chats (JSON)").click()
    assert (
        len(json.loads(open(everything.value.path(), encoding="utf-8").read())["conversations"])
        == 1
    )

    page.get_by_label("Search conversations").fill("answer")
    snippet = page.locator(".conv-snippet").first
    expect(snippet.locator("mark")).to_have_text("answer")
    expect(snippet).to_contain_text("The <b>answer</b> mentions")  # shown as text, not markup
