"""The chat in a real browser against a live Daphne and the mock upstream."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

MARKDOWN_REPLY = (
    "Here is **some code**:\n\n```python\ndef greet(name):\n    return 'hi ' + name\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\nDone."
)


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_a_streamed_reply_renders_as_markdown_with_highlighted_code(
    signed_in, upstream: MockUpstream
) -> None:
    upstream.script(text=MARKDOWN_REPLY, delay=0.01)
    page = signed_in()
    send(page, "Show me code")
    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_class(re.compile("status-complete"))
    expect(reply.locator(".code-block .code-lang")).to_have_text("python")
    expect(reply.locator(".code-block .hl .k").first).to_have_text("def")
    expect(reply.locator("table td").first).to_have_text("1")
    expect(reply.locator(".msg-stats")).to_contain_text("tokens/s")
    expect(page.locator(".msg-user .user-text")).to_have_text("Show me code")
    assert Message.objects.get(role="assistant").content == MARKDOWN_REPLY
