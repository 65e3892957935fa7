"""Reasoning replies: the `<think>` splitter, thinking streamed, saved and shown collapsed
from each source, the think switch reaching the upstream, and resume mid-thought."""

from __future__ import annotations

import re
from html import unescape

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from accounts.models import User
from conversations import fragments, runner
from conversations.models import Conversation, Message
from conversations.reasoning import ThinkSplitter, Transcript, split_transcript, think_param
from llm.models import Connection
from tests.conversations.conftest import MODEL, reply_of
from tests.mock_upstream import MockUpstream

on_the_socket = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]

THOUGHT = "First I weigh the question. Then I decide."
THINKER = "qwen3:8b"  # a model whose server reports it thinks
TAGGED = "<think>\nThe user greets me. I should greet back.\n</think>\n\nHello **friend**!"


def _split(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    thinking, answer = [], []
    for piece in pieces:
        t, a = splitter.feed(piece)
        thinking.append(t)
        answer.append(a)
    t, a = splitter.flush()
    return "".join(thinking) + t, "".join(answer) + a


# -- the splitter -----------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(len(TAGGED) + 1))
def test_think_tags_split_at_any_position_give_the_same_thinking_and_answer(cut: int) -> None:
    assert _split([TAGGED[:cut], TAGGED[cut:]]) == (
        "\nThe user greets me. I should greet back.\n",
        "Hello **friend**!",
    )


@pytest.mark.parametrize("first", range(1, 12))
def test_think_tags_split_in_three_pieces_and_char_by_char(first: int) -> None:
    expected = _split([TAGGED])
    for second in range(first, len(TAGGED)):
        assert _split([TAGGED[:first], TAGGED[first:second], TAGGED[second:]]) == expected
    assert _split(list(TAGGED)) == expected


def test_content_without_tags_is_all_answer_and_held_text_comes_back() -> None:
    assert _split(["  <thi", "s is not a tag"]) == ("", "  <this is not a tag")
    assert _split(["Talking about <think> tags"]) == ("", "Talking about <think> tags")
    assert _split(["<th"]) == ("", "<th")  # the stream ended undecided: it was answer
    assert _split(["<think>cut off mid-thou", "ght </thi"]) == ("cut off mid-thought </thi", "")


def test_the_transcript_reads_back_as_thinking_and_answer() -> None:
    encoder = Transcript()
    text = "".join(
        [encoder.encode("a b", ""), encoder.encode(" c", ""), encoder.encode("", "Hi"),
         encoder.encode("late", " there")]
    )  # fmt: skip
    assert split_transcript(text) == ("a b c", "Hi there", True)
    assert split_transcript("<think>half") == ("half", "", False)
    assert split_transcript("plain") == ("", "plain", True)


def test_the_switch_maps_to_the_engines_think_argument() -> None:
    assert [think_param(v) for v in ["", "off", "on", "low", "medium", "high", "bogus"]] == [
        None, False, True, "low", "medium", "high", None
    ]  # fmt: skip


# -- streamed, saved, shown -------------------------------------------------------------


async def _chat(sockets, conversation: Conversation, model: str = MODEL) -> list[str]:  # type: ignore[no-untyped-def]
    socket = await sockets(conversation.pk)
    ok, _ = await socket.connect()
    assert ok
    await socket.send(action="send", content="Think first", model=model)
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    return socket.frames


def _chat_request(mock: MockUpstream) -> dict:
    """The body of the reply's chat request (a title request follows it)."""
    return next(
        r.body for r in mock.requests if r.path.endswith(("/api/chat", "/chat/completions"))
    )


def _assert_streamed_then_collapsed(frames: list[str], reply: Message, thinking: str) -> None:
    """Thinking arrived live in an open block, then the block closed as the answer began,
    and the final message shows it closed with its duration."""
    opened = [f for f in frames if f'id="msg-{reply.pk}-thinking"' in f and " open>" in f]
    assert opened, "no frame opened the Thinking block"
    assert "Thinking…" in opened[0]
    closed = [f for f in frames if f'id="msg-{reply.pk}-thinking" class="thinking">' in f]
    assert closed, "no frame closed the Thinking block"
    assert frames.index(opened[0]) < frames.index(closed[0])
    assert "Thought for" in frames[-1]
    final_block = re.search(r'<details id="msg-\d+-thinking"[^>]*>.*?</details>', frames[-1], re.S)
    assert final_block and " open" not in final_block.group(0).split(">", 1)[0]
    shown = unescape(re.sub(r"<[^>]+>", "", final_block.group(0).split("</summary>", 1)[1]))
    assert shown == thinking


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_ollama_thinking_streams_is_saved_and_shown_collapsed(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(thinking=THOUGHT, text="The answer.", delay=0.1)
    frames = await _chat(sockets, conversation)
    reply = await reply_of(conversation)
    assert (reply.thinking, reply.content) == (THOUGHT, "The answer.")
    assert reply.thinking_ms is not None and reply.thinking_ms >= 50
    _assert_streamed_then_collapsed(frames, reply, THOUGHT)
    assert "think" not in _chat_request(mock)  # the switch is at the model's default


@pytest.fixture
def openai_conversation(member: User, mock: MockUpstream, transactional_db: None) -> Conversation:
    Connection.objects.create(name="openai", kind="openai", base_url=mock.openai_url)
    return Conversation.objects.create(owner=member, model="gpt-4o-mini")


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_openai_reasoning_streams_is_saved_and_shown_collapsed(
    sockets, openai_conversation: Conversation, mock: MockUpstream, field: str
) -> None:
    mock.script(thinking=THOUGHT, text="The answer.", delay=0.1, reasoning_field=field)
    frames = await _chat(sockets, openai_conversation, "gpt-4o-mini")
    reply = await reply_of(openai_conversation)
    assert (reply.thinking, reply.content) == (THOUGHT, "The answer.")
    _assert_streamed_then_collapsed(frames, reply, THOUGHT)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_think_tags_in_the_content_become_thinking(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    # The mock streams word by word, so the tags arrive glued to words of both sides.
    mock.script(text="<think>Weigh <b>this</b> & that.</think>So: yes.", delay=0.1)
    frames = await _chat(sockets, conversation)
    reply = await reply_of(conversation)
    assert (reply.thinking, reply.content) == ("Weigh <b>this</b> & that.", "So: yes.")
    _assert_streamed_then_collapsed(frames, reply, "Weigh <b>this</b> & that.")
    assert "<b>this</b>" not in "".join(frames)  # escaped, never markup
    assert "&lt;think&gt;" not in "".join(frames)
    await conversation.arefresh_from_db()
    assert conversation.title == "So: yes."  # the title request's answer, without its thinking


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_reply_without_thinking_has_no_thinking_block(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=3)
    frames = await _chat(sockets, conversation)
    reply = await reply_of(conversation)
    assert (reply.thinking, reply.thinking_ms) == ("", None)
    assert not any("-thinking" in frame for frame in frames)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_tab_joining_mid_thought_gets_the_thinking_so_far_open(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(thinking=THOUGHT, text="Done now.", ttft=0.0, delay=1.0)
    first = await sockets(conversation.pk)
    assert (await first.connect())[0]
    await first.send(action="send", content="Think first", model=MODEL)
    await first.receive_until(r"Thinking…")
    second = await sockets(conversation.pk)
    assert (await second.connect())[0]
    joined = await second.receive()
    assert "status-streaming" in joined and " open>" in joined and "I decide." in joined
    final = await second.receive_until(r"status-complete", within=8)
    assert "Thought for" in final


# -- the switch -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("choice", "sent"), [("off", False), ("on", True), ("high", "high")])
async def test_the_switch_reaches_the_ollama_request_as_think(
    sockets, conversation: Conversation, mock: MockUpstream, choice: str, sent: object
) -> None:
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(
        think=choice, model=THINKER
    )
    mock.script(tokens=2)
    await _chat(sockets, conversation, THINKER)
    assert _chat_request(mock)["think"] == sent


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_model_that_cannot_think_is_not_sent_the_saved_switch(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    """Set on for a thinking model, then the conversation moved to one that cannot think
    (whose server would refuse the field)."""
    await database_sync_to_async(Conversation.objects.filter(pk=conversation.pk).update)(think="on")
    mock.script(tokens=2)
    await _chat(sockets, conversation, MODEL)
    assert "think" not in _chat_request(mock)


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_level_reaches_the_openai_request_as_reasoning_effort(
    sockets, openai_conversation: Conversation, mock: MockUpstream
) -> None:
    await database_sync_to_async(Conversation.objects.filter(pk=openai_conversation.pk).update)(
        think="low"
    )
    mock.script(tokens=2)
    await _chat(sockets, openai_conversation, "gpt-4o-mini")
    assert _chat_request(mock)["reasoning_effort"] == "low"


@pytest.mark.django_db(transaction=True)
def test_the_switch_is_saved_from_the_page_and_a_bad_value_is_a_400(
    member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=THINKER)
    client = Client()
    client.force_login(member)
    page = client.get(f"/c/{conversation.pk}/")
    assert b'id="think-switch"' in page.content
    answer = client.post(f"/c/{conversation.pk}/think", {"think": "medium"}, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and b"Saved." in answer.content
    conversation.refresh_from_db()
    assert conversation.think == "medium"
    assert client.post(f"/c/{conversation.pk}/think", {"think": "max"}).status_code == 400
    assert client.get(f"/c/{conversation.pk}/think").status_code == 405
    page = client.get(f"/c/{conversation.pk}/")
    assert b'<option value="medium" selected>' in page.content


@pytest.mark.django_db(transaction=True)
def test_someone_elses_switch_is_a_404(member: User, connection: Connection) -> None:
    from tests.conftest import make_user

    other = make_user("other@example.com")
    conversation = Conversation.objects.create(owner=other, model=MODEL)
    client = Client()
    client.force_login(member)
    assert client.post(f"/c/{conversation.pk}/think", {"think": "on"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_saved_reply_shows_its_thinking_closed_on_the_page(
    member: User, connection: Connection
) -> None:
    conversation = Conversation.objects.create(owner=member, model=MODEL)
    reply = Message.objects.create(
        conversation=conversation, role="assistant", content="Yes.", thinking="Hmm <x>",
        thinking_ms=2500, model=MODEL,
    )  # fmt: skip
    client = Client()
    client.force_login(member)
    html = client.get(f"/c/{conversation.pk}/").content.decode()
    assert (
        f'<details id="msg-{reply.pk}-thinking" class="thinking"><summary>Thought for 2.5 s' in html
    )
    assert "Hmm &lt;x&gt;" in html
    item = fragments.message_item(reply)
    assert item["thinking"] == "Hmm <x>" and item["thinking_open"] is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio(loop_scope="session")
async def test_a_reply_stopped_while_thinking_keeps_its_thinking(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(text="<think>step one step two " + "more " * 200, delay=0.02)
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.send(action="send", content="Think", model=MODEL)
    await socket.receive_until(r"Thinking…")
    await socket.receive_until(r"more")  # appended to the open block
    await socket.send(action="stop")
    final = await socket.receive_until(r"status-stopped")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.STOPPED
    assert reply.thinking.startswith("step one step two") and reply.content == ""
    assert reply.thinking_ms is not None
    assert "Thought for" in final and " open>" not in final


@pytest.mark.django_db(transaction=True)
def test_a_recovered_reply_gets_thinking_and_answer_from_its_snapshot(
    member: User, connection: Connection
) -> None:
    from conversations import services

    conversation = Conversation.objects.create(owner=member, model=MODEL)
    Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", model=MODEL
    )
    services.interrupt_reply(reply, "<think>pondering</think>Partial ans")
    reply.refresh_from_db()
    assert (reply.status, reply.thinking, reply.content) == (
        "interrupted",
        "pondering",
        "Partial ans",
    )


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_share_keeps_the_thinking_closed(member: User, connection: Connection) -> None:
    from tests.conversations.test_shares import share

    conversation = Conversation.objects.create(owner=member, model=MODEL, title="Shared")
    Message.objects.create(conversation=conversation, role="user", content="Why?")
    Message.objects.create(
        conversation=conversation, role="assistant", content="Because.", thinking="Mulling",
        thinking_ms=1200, model=MODEL,
    )  # fmt: skip
    conversation.touch()
    client = Client()
    client.force_login(member)
    token = share(client, conversation)
    Message.objects.filter(role="assistant").update(thinking="Changed later")
    page = client.get(f"/s/{token}/").content.decode()
    assert 'class="thinking"><summary>Thought for 1.2 s</summary>' in page
    assert "Mulling" in page and "Changed later" not in page
