"""Sharing in a real browser: a live link watched by a visitor with no account while a reply
streams, a reload mid-reply, revocation seen by the visitor, and a signed-in colleague who
continues the chat in their own account."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Share
from tests.e2e.browser import needs_chromium
from tests.mock_upstream import MockUpstream

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]


def send(page, text: str) -> None:  # type: ignore[no-untyped-def]
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def create_link(page, who: str, what: str) -> str:  # type: ignore[no-untyped-def]
    """Share the open chat through the dialog; the link, as copied with one click."""
    page.get_by_role("link", name="Share", exact=True).click()
    dialog = page.locator("dialog#share-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label(re.compile(who)).check()
    dialog.get_by_label(re.compile(what)).check()
    dialog.get_by_role("button", name="Create link").click()
    link = dialog.locator("#share-link")
    expect(link).to_have_value(re.compile(r"/s/[A-Za-z0-9_-]{43}/$"))
    dialog.get_by_role("button", name="Copy link").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == link.input_value()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    return copied


def test_a_live_link_is_watched_without_an_account_through_a_reload_until_revoked(
    signed_in, browser, daphne_url: str, upstream: MockUpstream
) -> None:
    upstream.script(text="First answer")
    owner = signed_in()
    owner.context.grant_permissions(["clipboard-read", "clipboard-write"])
    send(owner, "Hello")
    expect(owner.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    link = create_link(owner, "Anyone with the link", "Live")

    visitor_context = browser.new_context(base_url=daphne_url)  # never signed in
    visitor_context.set_default_timeout(10_000)
    try:
        visitor = visitor_context.new_page()
        errors: list[str] = []
        visitor.on("console", lambda m: m.type == "error" and errors.append(m.text))
        visitor.goto(link)
        expect(visitor.locator(".msg-assistant")).to_contain_text("First answer")
        expect(visitor.get_by_text("Shared by mia")).to_be_visible()
        expect(visitor.get_by_role("button", name="Regenerate")).to_be_hidden()
        expect(visitor.get_by_role("link", name="Sign in to continue this chat")).to_be_visible()

        upstream.script(text=None, tokens=300, delay=0.02)
        send(owner, "Count for us")
        for page in (owner, visitor):  # the reply streams in both
            reply = page.locator(".msg-assistant").last
            expect(reply).to_have_class(re.compile("status-streaming"))
            expect(reply).to_contain_text("tok10")
        expect(visitor.locator(".msg-user").last).to_contain_text("Count for us")

        visitor.reload()
        reply = visitor.locator(".msg-assistant").last
        expect(reply).to_have_class(re.compile("status-streaming"))
        expect(reply).to_contain_text("tok150")
        expect(reply).to_have_class(re.compile("status-complete"), timeout=15_000)
        words = reply.locator(".msg-body").inner_text().split()
        assert words == [f"tok{i}" for i in range(300)]  # no gap, no duplicate

        owner.goto("/shares/")
        owner.get_by_role("link", name=re.compile("^Revoke the link to")).click()
        owner.get_by_role("button", name="Revoke link").click()
        expect(owner.get_by_text("no longer opens")).to_be_visible()
        expect(visitor.get_by_text("This link is no longer available")).to_be_visible()
        expect(visitor.locator(".msg")).to_have_count(0)
        assert visitor.goto(link).status == 404
        assert [e for e in errors if "404" not in e] == []  # no htmx error (missing target)
    finally:
        visitor_context.close()


def test_a_signed_in_colleague_continues_a_shared_chat_in_their_own_account(
    signed_in, upstream: MockUpstream
) -> None:
    upstream.script(text="Lisbon, in May.")
    owner = signed_in()
    owner.context.grant_permissions(["clipboard-read", "clipboard-write"])
    send(owner, "Where should we go?")
    expect(owner.locator(".msg-assistant").last).to_have_class(re.compile("status-complete"))
    link = create_link(owner, "Team", "Snapshot")
    assert Share.objects.get().visibility == "team"

    colleague = signed_in("bob")
    colleague.goto(link)
    expect(colleague.locator(".msg-assistant")).to_contain_text("Lisbon, in May.")
    colleague.get_by_role("button", name="Continue in my account").click()
    colleague.wait_for_url("**/c/*/")
    expect(colleague.locator(".msg-user .user-text")).to_have_text("Where should we go?")
    upstream.script(text="Take the train.")
    send(colleague, "And how do we get there?")
    reply = colleague.locator(".msg-assistant").last
    expect(reply).to_contain_text("Take the train.")
    expect(reply).to_have_class(re.compile("status-complete"))
    fork = Conversation.objects.exclude(last_message_at=None).get(owner__username="bob")
    assert list(fork.messages.values_list("content", flat=True)) == [
        "Where should we go?",
        "Lisbon, in May.",
        "And how do we get there?",
        "Take the train.",
    ]
    original = Conversation.objects.exclude(last_message_at=None).get(owner__username="mia")
    assert original.messages.count() == 2
