"""The chat websocket against the mock upstream: send, stream, stop, resume, refuse."""

from __future__ import annotations

import asyncio
import re
from html import unescape

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from accounts.models import User
from accounts.signals import account_group
from chatsite.redis import get_async_redis
from conversations import runner, services, snapshots
from conversations.consumers import FORBIDDEN, QUIET
from conversations.models import Conversation, Message
from tests.conftest import make_user
from tests.conversations.conftest import MODEL, reply_of, session_cookie
from tests.mock_upstream import MockUpstream
from usage.models import Generation

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope="session"),
]

PARAGRAPHS = "".join(f"para{i}\n\n" for i in range(60)).strip()
# The consumer refuses a socket whose session may not use the conversation with FORBIDDEN;
# Channels' origin validators close with no code (WebsocketDenier), which Daphne turns
# into an HTTP 403 refusal of the handshake.
REFUSED = {"type": "websocket.close", "code": FORBIDDEN}
DENIED = {"type": "websocket.close"}


async def connected(sockets, conversation: Conversation):  # type: ignore[no-untyped-def]
    socket = await sockets(conversation.pk)
    ok, _ = await socket.connect()
    assert ok
    return socket


async def handshake(socket) -> dict:  # type: ignore[no-untyped-def]
    """The application's answer to the websocket handshake, as the ASGI message it sent."""
    await socket.communicator.send_input({"type": "websocket.connect"})
    return await socket.communicator.receive_output(timeout=3)


async def test_a_sent_message_streams_a_reply_that_is_saved_with_its_metrics(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=20, delay=0.005)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Hello there", model=MODEL)
    final = await socket.receive_until(r"status-complete")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == " ".join(f"tok{i}" for i in range(20))
    assert (reply.prompt_tokens, reply.completion_tokens) == (10, 20)
    assert reply.tokens_per_second
    assert "tok19" in final and "tokens/s" in final and MODEL in final
    # The first frame carries the user's message and the empty streaming reply.
    assert "Hello there" in socket.frames[0]
    assert "status-streaming" in socket.frames[0]
    assert any('hx-swap-oob="innerHTML"' in frame for frame in socket.frames[1:-1])
    generation = await Generation.objects.order_by("started_at").afirst()  # then the title's
    assert (generation.status, generation.door, generation.completion_tokens) == ("ok", "web", 20)


async def test_the_title_comes_from_the_model_after_the_first_exchange(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=3)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="What is the capital of France, please?", model=MODEL)
    await socket.receive_until(r"status-complete")
    title_frame = await socket.receive_until(r'id="conv-title"')
    await conversation.arefresh_from_db()
    assert conversation.title == "tok0 tok1 tok2"
    assert "tok0 tok1 tok2" in title_frame
    title_request = mock.requests[-1].body
    assert title_request["stream"] is False
    # The title's tokens are metered like the reply's.
    rows = [row async for row in Generation.objects.order_by("started_at")]
    assert len(rows) == 2 and rows[1].status == "ok" and rows[1].completion_tokens > 0
    assert "capital of France" in title_request["messages"][0]["content"]


async def test_stop_cancels_the_upstream_within_a_second_and_keeps_the_partial_reply(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=2000, delay=0.01)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Count", model=MODEL)
    await socket.receive_until(r"tok5\b")
    await socket.send(action="stop")
    record = await mock.wait_for_disconnect_async(within=1.0)
    assert record.cut_by_client and not record.completed
    final = await socket.receive_until(r"status-stopped")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.STOPPED
    assert reply.content.startswith("tok0 tok1 tok2 tok3 tok4 tok5")
    assert "stopped" in final
    assert (await Generation.objects.aget()).status == "stopped"


async def test_closing_the_socket_mid_reply_does_not_stop_it(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=40, delay=0.01)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Go on", model=MODEL)
    await socket.receive_until(r"tok2\b")
    await socket.close()
    await runner.wait_for_runners()
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content.endswith("tok39")


async def test_regenerate_replaces_the_last_reply(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=3)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Hi", model=MODEL)
    await socket.receive_until(r"status-complete")
    first = await reply_of(conversation)
    mock.script(text="A different answer")
    await socket.send(action="regenerate")
    # Every tab is told to drop the old reply before the new one streams in.
    await socket.receive_until(rf'id="msg-{first.pk}" hx-swap-oob="delete"')
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    messages = [m async for m in conversation.messages.order_by("pk")]
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Hi"),
        ("assistant", "A different answer"),
    ]
    assert messages[1].pk != first.pk
    assert mock.requests[-1].body["messages"] == [{"role": "user", "content": "Hi"}]


async def test_editing_the_last_message_resends_it(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=3)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Helo", model=MODEL)
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    question = await conversation.messages.afirst()
    await socket.send(action="edit", message_id=question.pk, content="Hello")
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    assert [m.content async for m in conversation.messages.order_by("pk")] == [
        "Hello",
        "tok0 tok1 tok2",
    ]
    chat_requests = [r for r in mock.requests if isinstance(r.body, dict) and "messages" in r.body]
    assert chat_requests[-1].body["messages"] == [{"role": "user", "content": "Hello"}]


async def test_only_the_last_message_can_be_edited(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=2)
    socket = await connected(sockets, conversation)
    for text in ("one", "two"):
        await socket.send(action="send", content=text, model=MODEL)
        await socket.receive_until(r"status-complete")
        await runner.wait_for_runners()
    first = await conversation.messages.afirst()
    await socket.send(action="edit", message_id=first.pk, content="changed")
    frame = await socket.receive_until(r"composer-error")
    assert "Only your last message can be edited" in frame
    assert (await conversation.messages.afirst()).content == "one"


async def test_a_tab_joining_mid_reply_gets_the_text_so_far_then_the_rest_with_no_gap_or_duplicate(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(text=PARAGRAPHS, delay=0.01)
    layer = get_channel_layer()
    observer = await layer.new_channel()
    await layer.group_add(runner.group(conversation.pk), observer)
    first = await connected(sockets, conversation)
    await first.send(action="send", content="Paragraphs", model=MODEL)
    await first.receive_until(r"para10\b")
    second = await connected(sockets, conversation)
    snapshot_frame = await second.receive()
    assert "status-streaming" in snapshot_frame and "para10" in snapshot_frame
    await second.receive_until(r"status-complete")
    await runner.wait_for_runners()

    # Rebuild what the second tab shows, the way htmx swaps the frames.
    reply = await reply_of(conversation)
    done = _inner(snapshot_frame, f"msg-{reply.pk}-done")
    tail = _inner(snapshot_frame, f"msg-{reply.pk}-tail")
    for frame in second.frames[1:-1]:
        done += _inner(frame, f"msg-{reply.pk}-done") if f"msg-{reply.pk}-done" in frame else ""
        tail = _inner(frame, f"msg-{reply.pk}-tail")
    shown = _words(done + tail)
    # No gap and no duplicate: a prefix of the reply in order (the last batch may ride on
    # the final frame, which replaces the whole message).
    assert len(shown) > 20
    assert shown == [f"para{i}" for i in range(len(shown))]
    final_body = second.frames[-1].split("-body", 1)[1].split("<footer", 1)[0]
    assert _words(final_body.split(">", 1)[1]) == [f"para{i}" for i in range(60)]

    # Every update went out once, in order, with consecutive sequence numbers.
    seqs = []
    while True:
        try:
            async with asyncio.timeout(0.2):
                message = await layer.receive(observer)
        except TimeoutError:
            break
        if message["type"] == "reply.frame":
            seqs.append(message["seq"])
    await layer.group_discard(runner.group(conversation.pk), observer)
    assert seqs == list(range(len(seqs)))


def _words(html: str) -> list[str]:
    return unescape(re.sub(r"<[^>]+>", " ", html)).split()


def _inner(frame: str, element_id: str) -> str:
    match = re.search(
        rf'<div id="{element_id}"[^>]*>(.*?)</div>(?=\s*<div id="msg-|\s*$|\s*</div>)', frame, re.S
    )
    assert match, f"{element_id} not in frame"
    return match.group(1)


async def test_a_gap_in_sequence_numbers_resyncs_from_the_snapshot(
    sockets, conversation: Conversation
) -> None:
    """Frames the socket already covered are dropped; after a gap it sends the turn again
    from the snapshot, which is written before each frame is published."""
    turn = await database_sync_to_async(services.begin_turn)(conversation, "Hello", MODEL)
    reply_id = turn.reply.pk
    await snapshots.start(reply_id)
    socket = await connected(sockets, conversation)
    assert "status-streaming" in await socket.receive()  # the turn as it stands: seq 0
    layer = get_channel_layer()

    async def publish(seq: int, html: str) -> None:
        frame = {"type": "reply.frame", "message": reply_id, "seq": seq, "html": html}
        await layer.group_send(runner.group(conversation.pk), frame)

    await publish(0, "already shown")
    await publish(1, "next")
    assert await socket.receive() == "next"
    await snapshots.append(reply_id, "caught up", 3)  # the frame of seq 2 never arrives
    await publish(3, "after a gap")
    resync = await socket.receive()
    assert "caught up" in resync and "status-streaming" in resync
    await publish(3, "covered by the snapshot")
    await publish(4, "newer")
    assert await socket.receive() == "newer"
    assert await socket.communicator.receive_nothing(timeout=0.2)


async def test_an_upstream_error_mid_stream_keeps_the_partial_text_and_shows_a_retry(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=10, delay=0.005, error_after=4, error="model crashed")
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Try", model=MODEL)
    final = await socket.receive_until(r"status-error")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.ERROR
    assert reply.content == "tok0 tok1 tok2 tok3 "
    assert MODEL in reply.error and "model crashed" in reply.error
    assert "Retry" in final and "tok3" in final
    assert (await Generation.objects.aget()).status == "error"
    # Retry answers the same question again.
    mock.reset()
    mock.script(tokens=2)
    await socket.send(action="regenerate")
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    assert [m.content async for m in conversation.messages.order_by("pk")] == [
        "Try",
        "tok0 tok1",
    ]


async def test_an_unreachable_upstream_is_reported_in_place_and_the_message_is_kept(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(status=500, error="out of memory")
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Keep me", model=MODEL)
    final = await socket.receive_until(r"status-error")
    assert "out of memory" in final and MODEL in final
    assert await conversation.messages.filter(role="user", content="Keep me").aexists()


async def test_a_refused_turn_shows_the_meter_message_and_keeps_the_question(
    sockets, conversation: Conversation, mock: MockUpstream, settings
) -> None:
    settings.QUOTAS = {
        **settings.QUOTAS,
        "member": {**settings.QUOTAS["member"], "requests_per_minute": 1},
    }
    mock.script(tokens=2)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="first", model=MODEL)
    await socket.receive_until(r"status-complete")
    await runner.wait_for_runners()
    await socket.send(action="send", content="second", model=MODEL)
    frame = await socket.receive_until(r"status-error")
    assert "Too many requests" in frame
    assert await conversation.messages.filter(content="second").aexists()


async def test_a_message_while_a_reply_streams_is_refused(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=500, delay=0.01)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="one", model=MODEL)
    await socket.receive_until(r"tok1\b")
    await socket.send(action="send", content="two", model=MODEL)
    frame = await socket.receive_until(r"composer-error")
    assert "still being written" in frame
    assert "two" in frame  # the unsent text is put back in the box
    await socket.send(action="stop")
    await socket.receive_until(r"status-stopped")


async def test_an_unknown_model_is_refused_with_a_message(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="hi", model="nope:1b")
    frame = await socket.receive_until(r"composer-error")
    assert "nope:1b is not available" in frame
    assert not await conversation.messages.aexists()


async def test_someone_elses_conversation_is_refused(sockets, conversation: Conversation) -> None:
    other = await database_sync_to_async(make_user)("otto")
    cookie = await database_sync_to_async(session_cookie)(other)
    socket = await sockets(conversation.pk, user_cookie=cookie)
    assert await handshake(socket) == REFUSED


async def test_a_refused_socket_leaves_no_subscription_behind(
    sockets, conversation: Conversation
) -> None:
    """The socket joins its groups before the ownership check (so that nothing published
    after that read is missed); a refusal leaves them again."""
    other = await database_sync_to_async(make_user)("otto")
    cookie = await database_sync_to_async(session_cookie)(other)
    socket = await sockets(conversation.pk, user_cookie=cookie)
    assert await handshake(socket) == REFUSED
    # The layer's Redis channel for a group ends with the group's name.
    for group in (runner.group(conversation.pk), account_group(other.pk)):
        assert await get_async_redis().pubsub_channels(f"*{group}") == []


async def test_anonymous_and_pending_people_are_refused(
    sockets, conversation: Conversation
) -> None:
    anonymous = await sockets(conversation.pk, user_cookie="")
    assert await handshake(anonymous) == REFUSED
    owner = await User.objects.aget(pk=conversation.owner_id)
    owner.role = User.Role.PENDING
    await owner.asave()
    pending = await sockets(conversation.pk)
    assert await handshake(pending) == REFUSED


async def test_a_foreign_origin_is_refused(sockets, conversation: Conversation) -> None:
    socket = await sockets(conversation.pk, origin="http://evil.example")
    assert await handshake(socket) == DENIED


@pytest.mark.parametrize("origin", ["http://localhost:9999", "https://localhost"])
async def test_another_port_or_scheme_of_the_same_host_is_refused(
    sockets, conversation: Conversation, origin: str
) -> None:
    socket = await sockets(conversation.pk, origin=origin)
    assert await handshake(socket) == DENIED


async def test_behind_a_tls_proxy_the_https_origin_is_this_sites_own(
    sockets, conversation: Conversation, settings
) -> None:
    forwarded = [(b"x-forwarded-proto", b"https")]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    secure = await sockets(conversation.pk, origin="https://localhost", headers=forwarded)
    assert (await secure.connect())[0]
    downgraded = await sockets(conversation.pk, origin="http://localhost", headers=forwarded)
    assert await handshake(downgraded) == DENIED
    settings.SECURE_PROXY_SSL_HEADER = None  # a header nobody vouches for is not trusted
    spoofed = await sockets(conversation.pk, origin="https://localhost", headers=forwarded)
    assert await handshake(spoofed) == DENIED


async def test_every_message_is_authorized_again(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    socket = await connected(sockets, conversation)
    await User.objects.filter(pk=conversation.owner_id).aupdate(is_active=False)
    await socket.send(action="send", content="hi", model=MODEL)
    output = await socket.communicator.receive_output(timeout=2)
    assert output == REFUSED
    assert not await conversation.messages.aexists()


async def test_a_lost_final_frame_is_recovered_from_the_snapshot(
    sockets, conversation: Conversation
) -> None:
    """The core layer drops group messages at capacity; a tab must not stay "writing…".
    The test plays the runner: it publishes a frame, then saves the reply and finishes its
    snapshot, and the final frame never goes out."""
    turn = await database_sync_to_async(services.begin_turn)(conversation, "Hello", MODEL)
    reply_id = turn.reply.pk
    await snapshots.start(reply_id)
    socket = await connected(sockets, conversation)
    assert "status-streaming" in await socket.receive()  # the turn as it stands: seq 0
    await snapshots.append(reply_id, "tok0 ", 1)
    frame = {"type": "reply.frame", "message": reply_id, "seq": 1, "html": "tok0"}
    await get_channel_layer().group_send(runner.group(conversation.pk), frame)
    assert await socket.receive() == "tok0"
    await database_sync_to_async(services.finish_reply)(
        turn.reply, content="tok0 tok1", status=Message.Status.COMPLETE
    )
    await snapshots.finish(reply_id, 2)  # the final frame, seq 2, is lost
    final = await socket.receive_until(r"status-complete", within=2 * QUIET + 1)
    assert "tok1" in final and "writing…" not in final


async def test_the_saved_html_is_the_streamed_render_and_equals_a_whole_render(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    from conversations.markdown import render_markdown

    text = "# Title\n\nSome *text* and `code`.\n\n- one\n- two\n\n```python\nx = 1\n```\n\nend"
    mock.script(text=text, delay=0.002)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Markdown please", model=MODEL)
    await socket.receive_until(r"status-complete")
    reply = await reply_of(conversation)
    assert reply.content == text
    assert reply.html == render_markdown(text)


async def test_a_snapshot_that_lost_its_text_is_written_whole_again(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    """Redis restarted or the key expired mid-reply: later joiners still get every word."""
    from chatsite.redis import get_async_redis

    mock.script(tokens=60, delay=0.01)
    socket = await connected(sockets, conversation)
    await socket.send(action="send", content="Count", model=MODEL)
    await socket.receive_until(r"tok10\b")
    reply = await reply_of(conversation)
    # The text's key goes (read in the same step, to be sure it is the reply's text).
    lost = get_async_redis().pipeline(transaction=True)
    lost.get(f"chat:reply:{reply.pk}:text")
    lost.delete(f"chat:reply:{reply.pk}:text")
    text, deleted = await lost.execute()
    assert deleted == 1 and text.startswith("tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9")
    await socket.receive_until(r"tok30\b")
    joiner = await connected(sockets, conversation)
    first = await joiner.receive()
    assert re.search(r"\btok0\b", first) and re.search(r"\btok25\b", first)
    await joiner.receive_until(r"status-complete")
    snapshot = await snapshots.read(reply.pk)
    assert snapshot is not None
    assert snapshot.text == " ".join(f"tok{i}" for i in range(60))


async def test_malformed_frames_are_ignored_and_the_socket_lives_on(
    sockets, conversation: Conversation, mock: MockUpstream
) -> None:
    mock.script(tokens=2)
    socket = await connected(sockets, conversation)
    await socket.communicator.send_to(text_data="this is not json")
    await socket.send(action="edit", message_id=1e999, content="x", model=MODEL)
    await socket.send(action="send", content="Still here?", model=MODEL)
    assert "tok1" in await socket.receive_until(r"status-complete")
