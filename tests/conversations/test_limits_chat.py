"""Limits in the browser: the model picker offers only the models a person may use, a refused
model gets a clear message under the composer, and a spent budget is shown in place of the
reply with the limit and when it resets."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import PersonLimits, User
from conversations import runner
from conversations.models import Conversation
from tests.conversations.conftest import MODEL
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)
on_the_sessions_loop = pytest.mark.asyncio(loop_scope="session")

OTHER = "qwen3:8b"


def picker_options(client: Client, conversation: Conversation) -> list[str]:
    text = client.get(reverse("conversations:detail", args=[conversation.pk])).content.decode()
    picker = text[text.index('id="model-picker"') : text.index("</select>")]
    return re.findall(r'<option value="([^"]+)"(?! selected disabled)', picker)


def test_the_picker_offers_only_the_models_a_person_may_use(
    member: User, member_client: Client, conversation: Conversation
) -> None:
    assert sorted(picker_options(member_client, conversation)) == [MODEL, OTHER]
    PersonLimits.objects.create(user=member, models=["qwen3*"])
    text = member_client.get(reverse("conversations:detail", args=[conversation.pk])).content
    assert f"{MODEL} (unavailable)".encode() in text  # the chat's model, no longer open
    assert picker_options(member_client, conversation) == [OTHER]
    refused = member_client.post(
        reverse("conversations:settings", args=[conversation.pk]), {"model": MODEL}
    )
    assert refused.status_code == 400 and b"not available to you" in refused.content
    allowed = member_client.post(
        reverse("conversations:settings", args=[conversation.pk]), {"model": OTHER}
    )
    assert allowed.status_code in (200, 302)


def test_with_no_model_open_the_page_says_to_ask_an_admin(
    member: User, member_client: Client, conversation: Conversation
) -> None:
    PersonLimits.objects.create(user=member, models=["nothing-here*"])
    text = member_client.get(reverse("conversations:detail", args=[conversation.pk])).content
    assert b"No model is open to you" in text and b"No models yet" not in text


@on_the_sessions_loop
async def test_sending_to_a_refused_model_is_explained_under_the_composer(
    sockets, member: User, conversation: Conversation, mock: MockUpstream
) -> None:
    await PersonLimits.objects.acreate(user=member, models=["qwen3*"])
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Hello", model=MODEL)
    frame = await socket.receive_until(r"composer-error")
    assert f"You may not use the model {MODEL}" in frame
    assert "ask an admin for access" in frame
    # No model was asked (the catalog's /api/show only says what models can do).
    assert not [r for r in mock.requests if r.method == "POST" and r.path != "/api/show"]


@on_the_sessions_loop
async def test_a_spent_budget_is_shown_with_its_limit_and_reset(
    sockets, member: User, conversation: Conversation, mock: MockUpstream
) -> None:
    await PersonLimits.objects.acreate(user=member, tokens_per_day=15)
    mock.script(tokens=5)  # 10 prompt + 5 reply tokens: the whole budget
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="first", model=MODEL)
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()  # the title is metered too
    await socket.send(action="send", content="second", model=MODEL)
    frame = await socket.receive_until(r"status-error")
    assert "daily token quota" in frame and "15 tokens per day (set for you)" in frame
    assert "resets at midnight UTC, in" in frame
