"""The model picker: the catalog's facts of each model, and each person's last choice."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from conversations import model_picker
from conversations.models import Conversation
from llm.catalog import CatalogModel
from llm.models import Connection
from tests.conftest import make_user
from tests.conversations.conftest import MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def options(body: str) -> dict[str, str]:
    """The picker's options: value -> label."""
    picker = re.search(r'<select id="model-picker".*?</select>', body, re.S)[0]
    return dict(re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', picker))


def test_the_picker_shows_what_the_catalog_knows_of_each_model(
    member_client: Client, member: User, connection: Connection, mock
) -> None:
    Connection.objects.create(name="cloud", kind="openai", base_url=mock.openai_url)
    conversation = Conversation.objects.create(owner=member, model=MODEL)
    found = options(member_client.get(f"/c/{conversation.pk}/").content.decode())
    # The context length and the capabilities come from Ollama's /api/show.
    assert found[MODEL] == f"{MODEL} — llama · 3.2B · Q4_K_M · 128K context · tools"
    assert found["qwen3:8b"] == "qwen3:8b — llama · 3.2B · Q4_K_M · 128K context · tools, thinking"
    # An OpenAI-compatible server says nothing of its models: the name alone.
    assert found["gpt-4o-mini"] == "gpt-4o-mini"


def test_facts_include_context_length_and_capabilities_when_known() -> None:
    model = CatalogModel(
        name="qwen3:8b",
        upstream_name="qwen3:8b",
        connection_id=1,
        connection_name="c",
        kind="ollama",
        details={
            "family": "qwen3",
            "parameter_size": "8.2B",
            "quantization_level": "Q4_K_M",
        },
        capabilities=["completion", "tools", "thinking"],
        context_length=40960,
    )
    assert model_picker.facts(model) == "qwen3 · 8.2B · Q4_K_M · 40K context · tools, thinking"
    bare = CatalogModel(
        name="m",
        upstream_name="m",
        connection_id=1,
        connection_name="c",
        kind="openai",
        details={"family": 3},
    )
    assert model_picker.facts(bare) == ""


def test_a_new_chat_starts_with_the_persons_last_choice(
    member_client: Client, member: User, connection: Connection
) -> None:
    from django.utils import timezone

    draft = Conversation.objects.create(owner=member, model=MODEL)  # the new chat, kept
    used = Conversation.objects.create(owner=member, model=MODEL, last_message_at=timezone.now())
    response = member_client.post(f"/c/{used.pk}/settings", {"model": "qwen3:8b"})
    assert response.status_code == 302
    assert member_client.get("/").url == f"/c/{draft.pk}/"
    body = member_client.get(f"/c/{draft.pk}/").content.decode()
    assert re.search(r'<option value="qwen3:8b"[^>]* selected>', body)
    assert not re.search(rf'<option value="{re.escape(MODEL)}"[^>]* selected>', body)

    # Another person's choice is theirs alone.
    other = Client()
    other.force_login(make_user("eve"))
    other_draft = other.get("/").url
    other_body = other.get(other_draft).content.decode()
    assert re.search(rf'<option value="{re.escape(MODEL)}"[^>]* selected>', other_body)

    # Picking again replaces the choice.
    member_client.post(f"/c/{used.pk}/settings", {"model": MODEL})
    body = member_client.get(f"/c/{draft.pk}/").content.decode()
    assert re.search(rf'<option value="{re.escape(MODEL)}"[^>]* selected>', body)


def test_a_conversation_with_messages_keeps_its_own_model(
    member_client: Client, member: User, connection: Connection
) -> None:
    from django.utils import timezone

    talk = Conversation.objects.create(owner=member, model=MODEL, last_message_at=timezone.now())
    model_picker.remember(member, "qwen3:8b")
    body = member_client.get(f"/c/{talk.pk}/").content.decode()
    assert re.search(rf'<option value="{re.escape(MODEL)}"[^>]* selected>', body)


def test_a_model_no_longer_available_is_not_chosen(
    member_client: Client, member: User, connection: Connection
) -> None:
    model_picker.remember(member, "gone:latest")
    draft = Conversation.objects.create(owner=member)
    body = member_client.get(f"/c/{draft.pk}/").content.decode()
    assert "gone:latest" not in body
