"""A thinking reply in a real browser: the Thinking block streams open, then collapses with
how long the model thought once the answer starts, and stays so after a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Message
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

THOUGHT = " ".join(f"idea{i}" for i in range(12))


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def test_a_thinking_reply_streams_open_then_collapses_when_the_answer_starts(
    signed_in, upstream: MockUpstream
) -> None:
    upstream.script(thinking=THOUGHT, think_delay=0.15, text="The answer is 42.", delay=0.4)
    page = signed_in()
    send(page, "Think about it")
    reply = page.locator(".msg-assistant").last
    block = reply.locator("details.thinking")
    thinking_text = block.locator(".thinking-text")

    # While the model thinks: open, streaming word by word.
    expect(thinking_text).to_contain_text("idea2")
    assert "idea11" not in thinking_text.inner_text()
    expect(block).to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text("Thinking…")

    # The answer starts: the block closes while the reply is still being written.
    expect(reply.locator("details.thinking:not([open])")).to_be_attached()
    assert "status-streaming" in (reply.get_attribute("class") or "")
    expect(thinking_text).to_be_hidden()
    expect(block.locator("summary")).to_have_text(re.compile(r"^Thought for \d+(\.\d)? s$"))

    expect(reply).to_have_class(re.compile("status-complete"))
    expect(reply.locator(".msg-body")).to_have_text("The answer is 42.")
    expect(block).not_to_have_attribute("open", "")
    block.locator("summary").click()
    expect(thinking_text).to_be_visible()
    expect(thinking_text).to_have_text(THOUGHT)

    saved = Message.objects.get(role="assistant")
    assert (saved.thinking, saved.content) == (THOUGHT, "The answer is 42.")
    assert saved.thinking_ms is not None and saved.thinking_ms > 1000

    page.reload()
    block = page.locator(".msg-assistant").last.locator("details.thinking")
    expect(block).not_to_have_attribute("open", "")
    expect(block.locator("summary")).to_have_text(re.compile(r"^Thought for \d+(\.\d)? s$"))
    expect(block.locator(".thinking-text")).to_have_text(THOUGHT, use_inner_text=False)


def test_the_think_switch_follows_the_model_and_is_saved_and_sent(
    signed_in, upstream: MockUpstream
) -> None:
    upstream.script(tokens=2)
    page = signed_in()
    switch = page.get_by_label("Thinking")
    expect(switch).to_have_count(0)  # llama3.2:latest, the first model, cannot think
    page.select_option("#model-picker", "qwen3:8b")  # it can: the switch comes, no reload
    # Changed only once htmx has settled the swapped-in form (and listens to it).
    expect(page.locator("#think-slot:not(.htmx-settling) #think-switch")).to_be_attached()
    switch.select_option("high")
    expect(page.locator("#think-status")).to_have_text("Saved.")
    send(page, "Think hard")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    chat = next(r.body for r in upstream.requests if r.path.endswith("/api/chat"))
    assert (chat["model"], chat["think"]) == ("qwen3:8b", "high")
    page.select_option("#model-picker", "llama3.2:latest")
    expect(switch).to_have_count(0)
    page.reload()
    expect(switch).to_have_count(0)
