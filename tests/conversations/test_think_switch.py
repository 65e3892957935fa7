"""The think switch shows only for a model that can think (or when nobody can tell), and
follows the model picked, on the page and in the picker's htmx answer."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from conversations.models import Conversation
from llm.models import Connection
from tests.conversations.conftest import MODEL
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)

THINKER = "qwen3:8b"  # its /api/show reports "thinking"; MODEL's does not


def slot(html: str) -> str:
    """The think switch's slot in a page or an htmx answer."""
    return re.search(r'<div id="think-slot".*?</div>', html, re.S)[0]


def shown(html: str) -> bool:
    found = slot(html)
    return 'id="think-switch"' in found and " hidden" not in found.split(">", 1)[0]


def page(client: Client, conversation: Conversation) -> str:
    return client.get(f"/c/{conversation.pk}/").content.decode()


def test_the_switch_is_hidden_for_an_ollama_model_that_cannot_think(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=MODEL)
    assert slot(page(member_client, conversation)) == '<div id="think-slot" hidden></div>'


def test_the_switch_is_shown_for_a_model_that_thinks(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=THINKER)
    assert shown(page(member_client, conversation))


def test_the_switch_is_shown_when_the_server_does_not_say(
    member_client: Client, member: User, connection: Connection, mock: MockUpstream
) -> None:
    Connection.objects.create(name="cloud", kind="openai", base_url=mock.openai_url)
    mock.show_broken.add(MODEL)  # its /api/tags entry alone: no capabilities known
    for model in ("gpt-4o-mini", MODEL):
        conversation = Conversation.objects.create(owner=member, model=model)
        assert shown(page(member_client, conversation)), model


def test_picking_a_model_swaps_the_switch_in_and_out(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=MODEL)
    url = f"/c/{conversation.pk}/settings"
    answer = member_client.post(url, {"model": THINKER}, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="think-slot" hx-swap-oob="true"' in answer and shown(answer)
    assert f'action="/c/{conversation.pk}/think"' in answer
    answer = member_client.post(url, {"model": MODEL}, HTTP_HX_REQUEST="true").content.decode()
    assert slot(answer) == '<div id="think-slot" hidden hx-swap-oob="true"></div>'
    # Saving the system prompt leaves the switch alone.
    answer = member_client.post(url, {"system_prompt": "Be brief."}, HTTP_HX_REQUEST="true")
    assert b"think-slot" not in answer.content


def test_without_javascript_the_reloaded_page_shows_the_switch_of_the_model_picked(
    member_client: Client, member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=MODEL)
    answer = member_client.post(f"/c/{conversation.pk}/settings", {"model": THINKER})
    assert answer.status_code == 302
    assert shown(page(member_client, conversation))
    member_client.post(f"/c/{conversation.pk}/settings", {"model": MODEL})
    assert not shown(page(member_client, conversation))
