"""Per-conversation generation parameters: saved from the panel, sent in each protocol's
own fields (Ollama `options`, OpenAI top-level fields), absent when blank."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import User
from conversations.models import Conversation, Message
from llm.models import Connection
from tests.conftest import make_user
from tests.conversations.conftest import MODEL
from tests.mock_upstream import MockUpstream

pytestmark = pytest.mark.django_db(transaction=True)
on_the_socket = pytest.mark.asyncio(loop_scope="session")

ALL_SET = {
    "temperature": "0.3",
    "top_p": "0.85",
    "max_tokens": "256",
    "num_ctx": "8192",
    "seed": "42",
}


def _save(client: Client, conversation: Conversation, **fields: str) -> object:
    return client.post(f"/c/{conversation.pk}/parameters", fields, headers={"HX-Request": "true"})


async def _send(sockets, mock: MockUpstream, conversation: Conversation, model: str) -> dict:  # type: ignore[no-untyped-def]
    """One turn over the chat socket; the body of the chat request the upstream recorded."""
    socket = await sockets(conversation.pk)
    ok, _ = await socket.connect()
    assert ok
    content = f"Hello {len(mock.requests)}"
    await socket.send(action="send", content=content, model=model)
    await socket.receive_until(content)
    await socket.receive_until(r"status-complete")
    await socket.close()
    # The reply's request (a title request may follow it, with options of its own).
    (body,) = [
        r.body
        for r in mock.requests
        if r.path.endswith(("/api/chat", "/chat/completions"))
        and r.body["messages"][-1]["content"] == content
    ]
    return body


def test_the_panel_saves_parameters_and_blank_means_default(
    member_client: Client, conversation: Conversation
) -> None:
    response = _save(member_client, conversation, **ALL_SET)
    assert response.status_code == 200 and "Saved." in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.temperature, conversation.top_p) == (0.3, 0.85)
    assert (conversation.max_tokens, conversation.num_ctx, conversation.seed) == (256, 8192, 42)

    _save(member_client, conversation, temperature="", top_p="", max_tokens="", num_ctx="", seed="")
    conversation.refresh_from_db()
    assert [conversation.temperature, conversation.top_p, conversation.max_tokens] == [None] * 3
    assert [conversation.num_ctx, conversation.seed] == [None, None]


@pytest.mark.parametrize(
    "field, value",
    [
        ("temperature", "3"),
        ("top_p", "-0.1"),
        ("max_tokens", "0"),
        ("num_ctx", "abc"),
        ("seed", "1e400"),
    ],
)
def test_out_of_range_values_are_a_clear_400(
    member_client: Client, conversation: Conversation, field: str, value: str
) -> None:
    response = _save(member_client, conversation, **{field: value})
    assert response.status_code == 400
    label = {"top_p": "Top p", "num_ctx": "Context length", "max_tokens": "Max tokens"}
    assert response.content.decode().startswith(f"{label.get(field, field.capitalize())}: ")
    conversation.refresh_from_db()
    assert getattr(conversation, field) is None


def test_someone_elses_conversation_is_404(conversation: Conversation) -> None:
    other = Client()
    other.force_login(make_user("eve"))
    assert _save(other, conversation, temperature="1").status_code == 404
    assert (
        Client().post(f"/c/{conversation.pk}/parameters", {"temperature": "1"}).status_code == 302
    )


def test_the_page_shows_the_panel_with_saved_values(
    member_client: Client, conversation: Conversation
) -> None:
    _save(member_client, conversation, temperature="0.7", seed="7")
    page = member_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'name="temperature"' in page and 'value="0.7"' in page and 'value="7"' in page
    assert 'name="num_ctx"' in page and 'name="max_tokens"' in page and 'name="top_p"' in page


@on_the_socket
async def test_set_parameters_reach_ollama_as_options(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(
        temperature=0.3, top_p=0.85, max_tokens=256, num_ctx=8192, seed=42
    )
    body = await _send(sockets, mock, conversation, MODEL)
    assert body["options"] == {
        "temperature": 0.3,
        "top_p": 0.85,
        "num_predict": 256,
        "num_ctx": 8192,
        "seed": 42,
    }


@on_the_socket
async def test_blank_parameters_are_absent_from_the_ollama_request(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    body = await _send(sockets, mock, conversation, MODEL)
    assert "options" not in body
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(seed=5)
    body = await _send(sockets, mock, conversation, MODEL)
    assert body["options"] == {"seed": 5}


@pytest.fixture
def openai_conversation(member: User, mock: MockUpstream, transactional_db: None) -> Conversation:
    Connection.objects.create(name="openai", kind="openai", base_url=mock.openai_url)
    return Conversation.objects.create(owner=member, model="gpt-4o-mini")


@on_the_socket
async def test_set_parameters_reach_openai_as_top_level_fields(
    sockets, openai_conversation: Conversation, mock: MockUpstream
) -> None:
    await database_sync_to_async(Conversation.objects.filter(pk=openai_conversation.pk).update)(
        temperature=0.2, top_p=0.5, max_tokens=100, num_ctx=4096, seed=9
    )
    body = await _send(sockets, mock, openai_conversation, "gpt-4o-mini")
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (
        0.2,
        0.5,
        100,
        9,
    )
    # OpenAI's protocol has no context length: it is not sent, nor any Ollama field.
    assert "options" not in body and "num_ctx" not in body and "num_predict" not in body


@on_the_socket
async def test_blank_parameters_are_absent_from_the_openai_request(
    sockets, openai_conversation: Conversation, mock: MockUpstream
) -> None:
    body = await _send(sockets, mock, openai_conversation, "gpt-4o-mini")
    for field in ("temperature", "top_p", "max_tokens", "seed", "options", "num_ctx"):
        assert field not in body
    reply = await Message.objects.filter(conversation=openai_conversation, role="assistant").alast()
    assert reply.status == Message.Status.COMPLETE
