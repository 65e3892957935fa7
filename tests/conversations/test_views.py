"""Chat pages with the Django test client."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from conversations.models import Conversation, Message
from llm.models import Connection
from tests.conftest import make_user
from tests.conversations.conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def chat(owner: User, title: str = "Chat", messages: int = 0, **fields: object) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, title=title, model=MODEL, last_message_at=timezone.now(), **fields
    )
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user" if i % 2 == 0 else "assistant",
            content=f"message {i}",
            html=f"<p>message {i}</p>",
        )
        for i in range(messages)
    )
    return conversation


def test_signed_out_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_home_opens_a_new_chat_and_reuses_the_empty_one(member_client: Client) -> None:
    first = member_client.get("/")
    second = member_client.get("/")
    assert first["Location"] == second["Location"]
    assert Conversation.objects.count() == 1


def test_the_page_shows_the_thread_the_model_picker_and_the_websocket(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = chat(member, messages=2)
    response = member_client.get(f"/c/{conversation.pk}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert f'ws-connect="/ws/c/{conversation.pk}/"' in body
    facts = "llama · 3.2B · Q4_K_M · 128K context · tools"
    assert f'<option value="llama3.2:latest" title="{facts}" selected>' in body
    assert "message 0" in body and "<p>message 1</p>" in body
    assert "hx-disable" in body
    assert "hx-ws" in body  # the ws extension script


def test_without_models_the_page_says_to_add_a_connection(
    admin_client: Client, admin: User
) -> None:
    conversation = chat(admin)
    body = admin_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "No models yet" in body and "ask an admin to add a connection" in body
    assert 'href="/staff/connections/"' in body


def test_someone_elses_conversation_is_not_found(member_client: Client) -> None:
    conversation = chat(make_user("otto"))
    for path in ("", "messages", "rename", "delete", "item"):
        assert member_client.get(f"/c/{conversation.pk}/{path}").status_code == 404
    assert member_client.post(f"/c/{conversation.pk}/pin").status_code == 404
    assert member_client.post(f"/c/{conversation.pk}/delete").status_code == 404
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_a_long_conversation_opens_with_only_the_latest_messages(
    member_client: Client, member: User
) -> None:
    conversation = chat(member, messages=1000)
    body = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert "message 999" in body and "message 950" in body
    assert "message 949" not in body
    assert "Load earlier messages" in body
    first_shown = conversation.messages.order_by("-pk")[49].pk
    older = member_client.get(f"/c/{conversation.pk}/messages?before={first_shown}")
    text = older.content.decode()
    assert "message 949" in text and "message 900" in text and "message 899" not in text
    assert "Load earlier messages" in text


def test_the_sidebar_lists_pinned_then_newest_and_hides_empty_drafts(
    member_client: Client, member: User
) -> None:
    old = chat(member, "Old one")
    chat(member, "Newer one")
    old.pinned = True
    old.save()
    Conversation.objects.create(owner=member)  # an empty draft
    body = member_client.get("/c/").content.decode()
    assert body.index("Old one") < body.index("Newer one")
    assert body.count('class="conv-item') == 2


def test_search_finds_titles_and_message_text(member_client: Client, member: User) -> None:
    chat(member, "Holiday plans")
    talk = chat(member, "Untitled")
    Message.objects.create(conversation=talk, role="user", content="the Quicksort algorithm")
    chat(member, "Other")
    assert "Holiday plans" in member_client.get("/c/?q=holiday").content.decode()
    body = member_client.get("/c/?q=quicksort").content.decode()
    assert "Untitled" in body and "Holiday" not in body and "Other" not in body
    assert "No conversations match" in member_client.get("/c/?q=zebra").content.decode()


def test_the_sidebar_is_paginated(member_client: Client, member: User) -> None:
    for i in range(60):
        chat(member, f"Chat {i:02d}")
    first = member_client.get("/c/").content.decode()
    assert first.count('class="conv-item') == 50 and "More conversations" in first
    more = member_client.get("/c/?page=2&more=1").content.decode()
    assert more.count('class="conv-item') == 10 and "More conversations" not in more


def test_rename_in_place(member_client: Client, member: User) -> None:
    conversation = chat(member, "Before")
    form = member_client.get(f"/c/{conversation.pk}/rename").content.decode()
    assert 'name="title"' in form and 'value="Before"' in form
    assert 'method="post"' in form and "csrfmiddlewaretoken" in form
    response = member_client.post(
        f"/c/{conversation.pk}/rename",
        {"title": "After", "current": conversation.pk},
        HTTP_HX_REQUEST="true",
    )
    conversation.refresh_from_db()
    assert conversation.title == "After"
    assert 'id="conv-title"' in response.content.decode()


def test_a_rename_submitted_before_htmx_took_the_form_still_renames(
    member_client: Client, member: User
) -> None:
    """Enter pressed before htmx has processed the swapped-in form posts it natively."""
    conversation = chat(member, "Before")
    response = member_client.post(f"/c/{conversation.pk}/rename", {"title": "After"})
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.pk}/"
    conversation.refresh_from_db()
    assert conversation.title == "After"


def test_pin_toggles(member_client: Client, member: User) -> None:
    conversation = chat(member)
    member_client.post(f"/c/{conversation.pk}/pin")
    conversation.refresh_from_db()
    assert conversation.pinned
    member_client.post(f"/c/{conversation.pk}/pin")
    conversation.refresh_from_db()
    assert not conversation.pinned


def test_delete_asks_first_then_deletes_everything(member_client: Client, member: User) -> None:
    conversation = chat(member, "Doomed", messages=2)
    page = member_client.get(f"/c/{conversation.pk}/delete").content.decode()
    assert "Delete this chat?" in page and "Doomed" in page
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    response = member_client.post(f"/c/{conversation.pk}/delete")
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


def test_settings_save_the_model_and_system_prompt(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = chat(member)
    member_client.post(
        f"/c/{conversation.pk}/settings", {"model": "qwen3:8b"}, headers={"HX-Request": "true"}
    )
    member_client.post(f"/c/{conversation.pk}/settings", {"system_prompt": "Be brief."})
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("qwen3:8b", "Be brief.")
    refused = member_client.post(f"/c/{conversation.pk}/settings", {"model": "nope"})
    assert refused.status_code == 400


def test_pending_people_cannot_open_chats(client: Client) -> None:
    pending = make_user("pat", role=User.Role.PENDING)
    client.force_login(pending)
    assert client.get("/").status_code == 302
    assert not Conversation.objects.exists()
