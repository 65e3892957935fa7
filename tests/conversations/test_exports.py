"""Exports: one conversation as Markdown or JSON, all of a person's as one streamed JSON."""

from __future__ import annotations

import json

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.utils import timezone

from accounts.models import User
from conversations.models import Conversation, Message
from tests.conftest import make_user
from tests.conversations.conftest import MODEL

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The test client reads the streamed export synchronously (Daphne streams it: e2e).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous"),
]


def chat(owner: User, title: str, texts: list[str], **fields: object) -> Conversation:
    conversation = Conversation.objects.create(
        owner=owner, title=title, model=MODEL, last_message_at=timezone.now(), **fields
    )
    for i, text in enumerate(texts):
        assistant = i % 2 == 1
        Message.objects.create(
            conversation=conversation,
            role="assistant" if assistant else "user",
            content=text,
            model=MODEL if assistant else "",
            prompt_tokens=10 + i if assistant else None,
            completion_tokens=20 + i if assistant else None,
        )
    return conversation


def _body(response: object) -> bytes:
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response)  # type: ignore[arg-type]
    return response.content  # type: ignore[attr-defined]


def test_the_json_export_holds_every_message_in_order_with_settings_and_tokens(
    member_client: Client, member: User
) -> None:
    texts = ["Hi <b>there</b>", "Hello! ```code```", 'Ünïcode ✓ "quotes"', "Done."]
    conversation = chat(
        member, "Round trip", texts, temperature=0.4, seed=3, system_prompt="Be brief"
    )
    response = member_client.get(f"/c/{conversation.pk}/export.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert 'attachment; filename="round-trip-' in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["title"] == "Round trip" and data["model"] == MODEL
    assert data["system_prompt"] == "Be brief"
    assert data["settings"] == {
        "temperature": 0.4,
        "top_p": None,
        "max_tokens": None,
        "num_ctx": None,
        "seed": 3,
    }
    saved = list(conversation.messages.order_by("pk"))
    assert [m["content"] for m in data["messages"]] == texts
    assert [m["id"] for m in data["messages"]] == [m.pk for m in saved]
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert (
        data["messages"][1]["prompt_tokens"] == 11
        and data["messages"][3]["completion_tokens"] == 23
    )
    assert data["messages"][0]["created_at"] == saved[0].created_at.isoformat()
    assert data["created_at"] and data["last_message_at"]


def test_the_markdown_export_has_each_message_under_its_role(
    member_client: Client, member: User
) -> None:
    conversation = chat(member, "Notes", ["What is 2+2?", "It is **4**."], top_p=0.9)
    response = member_client.get(f"/c/{conversation.pk}/export.md")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/markdown")
    text = response.content.decode()
    assert text.startswith("# Notes\n")
    assert "- top_p: 0.9" in text
    you, assistant = text.index("## You"), text.index(f"## Assistant ({MODEL})")
    assert you < text.index("What is 2+2?") < assistant < text.index("It is **4**.")
    assert "11 + 21 tokens" in text


def test_exports_of_someone_elses_conversation_are_404(member: User) -> None:
    conversation = chat(member, "Private", ["secret"])
    other = Client()
    other.force_login(make_user("eve"))
    for suffix in ("export.json", "export.md"):
        assert other.get(f"/c/{conversation.pk}/{suffix}").status_code == 404
    assert "secret" not in _body(other.get("/c/export.json")).decode()
    assert Client().get("/c/export.json").status_code == 302


def test_the_export_of_all_conversations_is_streamed_and_round_trips(
    member_client: Client, member: User
) -> None:
    first = chat(member, "First", ["a1", "b1", "c1"])
    chat(make_user("eve"), "Not mine", ["hidden"])
    Conversation.objects.create(owner=member)  # an empty draft is not exported
    second = chat(member, "Second", [f"line {i}" for i in range(7)], num_ctx=4096)
    empty_titled = chat(member, "Only title", [])
    response = member_client.get("/c/export.json")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"] == 'attachment; filename="chats-mia.json"'
    data = json.loads(_body(response))
    assert [c["id"] for c in data["conversations"]] == [first.pk, second.pk, empty_titled.pk]
    assert [m["content"] for m in data["conversations"][0]["messages"]] == ["a1", "b1", "c1"]
    assert [m["content"] for m in data["conversations"][1]["messages"]] == [
        f"line {i}" for i in range(7)
    ]
    assert data["conversations"][2]["messages"] == []
    # Each entry is what the conversation's own JSON export holds.
    single = json.loads(member_client.get(f"/c/{second.pk}/export.json").content)
    single.pop("version")
    assert data["conversations"][1] == single


def test_the_conversation_page_links_the_exports(member_client: Client, member: User) -> None:
    conversation = chat(member, "Linked", ["x"])
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    for link in (
        f"/c/{conversation.pk}/export.md",
        f"/c/{conversation.pk}/export.json",
        "/c/export.json",
    ):
        assert f'href="{link}"' in page


def test_exports_refuse_other_methods(member_client: Client, member: User) -> None:
    conversation = chat(member, "M", ["x"])
    assert member_client.post(f"/c/{conversation.pk}/export.json").status_code == 405
    assert member_client.post("/c/export.json").status_code == 405
