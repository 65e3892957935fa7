"""The chat in a real browser against a live Daphne and the mock upstream."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.conftest import make_user
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


def test_stop_ends_a_reply_and_keeps_what_was_written(signed_in, upstream: MockUpstream) -> None:
    upstream.script(tokens=3000, delay=0.01)
    page = signed_in()
    send(page, "Count forever")
    reply = page.locator(".msg-assistant").last
    expect(reply).to_contain_text("tok10")
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    stop.click()
    expect(reply).to_have_class(re.compile("status-stopped"))
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    saved = Message.objects.get(role="assistant")
    assert saved.status == Message.Status.STOPPED
    assert saved.content.startswith("tok0 tok1")
    # The upstream stream ended early; the consumer tests time the close itself.
    record = upstream.streams[0]
    deadline = time.monotonic() + 2
    while record.finished_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.finished_at is not None
    assert not record.completed and record.tokens_sent < 3000


def test_reloading_mid_reply_shows_the_text_so_far_and_keeps_streaming(
    signed_in, upstream: MockUpstream
) -> None:
    upstream.script(tokens=250, delay=0.01)
    page = signed_in()
    send(page, "Count")
    expect(page.locator(".msg-assistant").last).to_contain_text("tok20")
    page.reload()
    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_class(re.compile("status-streaming"))
    expect(reply).to_contain_text("tok150")
    expect(reply).to_have_class(re.compile("status-complete"), timeout=10_000)
    words = reply.locator(".msg-body").inner_text().split()
    assert words == [f"tok{i}" for i in range(250)]


def test_rename_and_delete_from_the_sidebar(signed_in, upstream: MockUpstream) -> None:
    upstream.script(tokens=2)
    page = signed_in()
    send(page, "Name me")
    item = page.locator(".conv-item").first
    expect(item).to_contain_text("tok0 tok1")  # the model's title
    item.hover()
    item.get_by_role("button", name=re.compile("^Rename")).click()
    title = page.get_by_label("New title")
    title.fill("Renamed chat")
    title.press("Enter")
    expect(page.locator(".conv-item").first).to_contain_text("Renamed chat")
    expect(page.locator("#conv-title")).to_have_text("Renamed chat")
    assert Conversation.objects.get().title == "Renamed chat"

    page.locator(".conv-item").first.hover()
    page.get_by_role("link", name="Delete Renamed chat").click()
    expect(page.get_by_role("heading", name="Delete this chat?")).to_be_visible()
    page.get_by_role("button", name="Delete chat").click()
    page.wait_for_url("**/c/*/")
    expect(page.locator(".conv-item")).to_have_count(0)
    assert not Conversation.objects.filter(title="Renamed chat").exists()


def test_the_page_works_on_a_narrow_screen(signed_in, upstream: MockUpstream) -> None:
    upstream.script(tokens=5)
    page = signed_in(width=375)
    expect(page.locator("#sidebar")).to_be_hidden()
    send(page, "Small screen")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    page.get_by_role("button", name="Chats").click()
    expect(page.locator("#sidebar")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375


def test_regenerate_replaces_the_reply_on_the_page(signed_in, upstream: MockUpstream) -> None:
    upstream.script(text="First answer")
    page = signed_in()
    send(page, "Answer twice")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    upstream.script(text="Second answer")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".msg-assistant")).to_have_count(1)
    expect(page.locator(".msg-assistant")).to_contain_text("Second answer")
    expect(page.locator(".msg-assistant")).to_have_class(re.compile("status-complete"))


def test_frames_swap_in_place_without_htmx_errors(signed_in, upstream: MockUpstream) -> None:
    """New messages and sidebar entries land where they belong through plain swaps: htmx
    reports no missing target, and no slot is left behind."""
    upstream.script(text="First answer")
    page = signed_in()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    send(page, "Answer twice")
    expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    expect(page.locator(".conv-item")).to_contain_text("First answer")  # the model's title
    upstream.script(text="Second answer")
    page.get_by_role("button", name="Regenerate").click()
    expect(page.locator(".msg-assistant")).to_contain_text("Second answer")
    expect(page.locator(".msg-assistant")).to_have_class(re.compile("status-complete"))
    expect(page.locator("#messages > .msg")).to_have_count(2)
    expect(page.locator(".conv-item")).to_have_count(1)
    expect(page.locator("#messages > template, #conv-items > template")).to_have_count(0)
    assert errors == []


def test_a_turn_sent_in_another_tab_shows_up_in_order(signed_in, upstream: MockUpstream) -> None:
    older = Conversation.objects.create(
        owner=make_user("mia"), model="llama3.2:latest", title="Older chat"
    )
    older.messages.create(role=Message.Role.USER, content="earlier")
    older.touch()
    upstream.script(text="Hello back")
    first, second = signed_in(), signed_in()  # both open the person's new chat
    assert first.url == second.url
    send(first, "Hello from the first tab")
    for page in (first, second):
        expect(page.locator(".msg-assistant")).to_have_class(re.compile("status-complete"))
        expect(page.locator("#messages > .msg")).to_have_count(2)
        expect(page.locator(".msg-user .user-text")).to_have_text("Hello from the first tab")
        # The new chat's entry joins the list at the top, the older one stays below it.
        expect(page.locator(".conv-item .conv-title")).to_have_text(["Hello back", "Older chat"])
    upstream.script(text="Second reply")
    send(second, "And from the second")
    for page in (first, second):
        expect(page.locator("#messages > .msg")).to_have_count(4)
        expect(page.locator(".msg-assistant").last).to_contain_text("Second reply")
        expect(page.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
        expect(page.locator(".conv-item")).to_have_count(2)  # replaced in place, not added
        expect(page.locator("#messages > template, #conv-items > template")).to_have_count(0)


def test_copy_buttons_copy_code_replies_and_new_keys(signed_in, upstream: MockUpstream) -> None:
    upstream.script(text=MARKDOWN_REPLY)
    page = signed_in()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    send(page, "Show me code")
    reply = page.locator(".msg-assistant").last
    expect(reply).to_have_class(re.compile("status-complete"))

    def clipboard() -> str:
        return page.evaluate("navigator.clipboard.readText()")

    code = reply.locator(".code-block")
    code.get_by_role("button", name="Copy code").click()
    expect(code.get_by_role("button", name="Copy code")).to_have_text("Copied")
    assert clipboard().rstrip("\n") == "def greet(name):\n    return 'hi ' + name"
    reply.locator(".msg-actions").get_by_role("button", name="Copy").click()
    assert clipboard().startswith("Here is some code:")

    page.goto("/keys/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("API key").input_value()
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert clipboard() == secret and secret.startswith("cs-")
