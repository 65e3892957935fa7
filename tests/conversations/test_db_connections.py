"""Database connections on the chat path: one kept per thread (SQLite), none shared between
threads, a broken one replaced, and a chat over them losing nothing."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import DatabaseError, connection, connections
from django.db.backends.signals import connection_created
from django.db.utils import ConnectionHandler

from accounts.models import User
from chatsite.sqlite_backend import base as sqlite_backend
from conversations import runner, services
from conversations.models import Conversation, Message
from conversations.socket_sessions import SocketSession, begin
from tests.conversations.conftest import MODEL, reply_of, session_cookie
from tests.mock_upstream import MockUpstream
from usage import limits

pytestmark = pytest.mark.django_db(transaction=True)
on_the_loop = pytest.mark.asyncio(loop_scope="session")

needs_sqlite = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="connections are kept for reuse on SQLite only"
)


class Opened:
    """Every database connection opened while it listens: by which thread, which DB-API
    connection (held, so no two are ever mistaken for one)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, object]] = []

    def __call__(self, sender: object, connection: object, **kwargs: object) -> None:
        self.seen.append((threading.get_ident(), connection.connection))  # type: ignore[attr-defined]

    def threads(self) -> list[int]:
        return [thread for thread, _ in self.seen]


@pytest.fixture
def opened() -> Iterator[Opened]:
    listener = Opened()
    connection_created.connect(listener, weak=False)
    yield listener
    connection_created.disconnect(listener)


def _raw() -> object:
    return connection.connection


def _break_raw() -> None:
    """Close the thread's DB-API connection under Django, as a failure would."""
    connection.connection.close()


def is_open(raw: sqlite3.Connection) -> bool:
    try:
        raw.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return False
    return True


async def chat(sockets, conversation: Conversation, tokens: int) -> tuple[str, list[float]]:  # type: ignore[no-untyped-def]
    """One turn over the socket: the final frame, and the checkpoint times seen meanwhile."""
    socket = await sockets(conversation.pk)
    assert (await socket.connect())[0]
    await socket.drain()  # the latest turn, sent on connect
    await socket.send(action="send", content="Hello", model=MODEL)
    checkpoints: list[float] = []

    async def watch() -> None:
        while True:
            reply = await Message.objects.filter(
                conversation=conversation, role=Message.Role.ASSISTANT
            ).alast()
            if reply is not None and reply.checkpointed_at is not None:
                stamp = reply.checkpointed_at.timestamp()
                if reply.status == Message.Status.STREAMING and stamp not in checkpoints:
                    checkpoints.append(stamp)
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch())
    try:
        final = await socket.receive_until(r"status-complete", within=tokens * 0.05 + 10)
    finally:
        watcher.cancel()
    await socket.close()
    return final, checkpoints


@needs_sqlite
@on_the_loop
async def test_a_chat_keeps_one_connection_in_the_sync_thread_and_shares_none(
    sockets, conversation: Conversation, mock: MockUpstream, opened: Opened
) -> None:
    await sync_to_async(connections.close_all)()  # the sync thread starts without one
    mock.script(tokens=120, delay=0.025)  # 3 s of streaming
    final, checkpoints = await chat(sockets, conversation, 120)
    mock.script(tokens=10, delay=0.005)
    await chat(sockets, conversation, 10)  # a second turn, on another socket
    await runner.wait_for_runners()

    # Every call of the consumer, the runner and the keeper ran in the one sync thread,
    # which opened one connection for all of them and kept it.
    sync_thread = await sync_to_async(threading.get_ident)()
    assert opened.threads() == [sync_thread]
    assert await sync_to_async(_raw)() is opened.seen[0][1]
    # No DB-API connection was ever used by two threads.
    assert len({id(raw) for _, raw in opened.seen}) == len(opened.seen)
    # Nothing lost: every token in order, the reply saved, checkpoints about once a second.
    words = " ".join(f"tok{i}" for i in range(120))
    assert words in final.replace("\n", " ")
    replies = [m async for m in Message.objects.filter(conversation=conversation, role="assistant")]
    assert replies[0].content == words and replies[0].status == Message.Status.COMPLETE
    assert replies[1].status == Message.Status.COMPLETE
    assert len(checkpoints) >= 2, checkpoints
    gaps = [b - a for a, b in itertools.pairwise(checkpoints)]
    assert all(0.8 <= gap <= 2.5 for gap in gaps), gaps


@needs_sqlite
@on_the_loop
async def test_a_connection_closed_under_the_sync_thread_is_replaced(
    sockets, conversation: Conversation, mock: MockUpstream, opened: Opened
) -> None:
    mock.script(tokens=5, delay=0.005)
    await chat(sockets, conversation, 5)  # the sync thread holds a connection now
    broken = await sync_to_async(_raw)()
    await sync_to_async(_break_raw)()
    opened.seen.clear()
    mock.script(tokens=30, delay=0.01)
    final, _ = await chat(sockets, conversation, 30)
    await runner.wait_for_runners()
    assert " ".join(f"tok{i}" for i in range(30)) in final.replace("\n", " ")
    reply = await reply_of(conversation)
    assert reply.status == Message.Status.COMPLETE
    assert reply.content == " ".join(f"tok{i}" for i in range(30))
    # The health check found it broken before the first query: one new connection.
    assert len(opened.seen) == 1 and opened.seen[0][1] is not broken


def _scratch(path: Path) -> ConnectionHandler:
    """A database of its own, configured as the site's SQLite database is."""
    settings = connections["default"].settings_dict
    return ConnectionHandler(
        {
            "default": {
                "ENGINE": settings["ENGINE"],
                "NAME": str(path),
                "OPTIONS": settings["OPTIONS"],
                "CONN_MAX_AGE": settings["CONN_MAX_AGE"],
                "CONN_HEALTH_CHECKS": settings["CONN_HEALTH_CHECKS"],
            }
        }
    )


def _make_db(path: Path, value: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (value,))
    db.close()


def _read(wrapper) -> str:  # type: ignore[no-untyped-def]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT v FROM t")
        return cursor.fetchone()[0]


@needs_sqlite
def test_a_replaced_database_file_and_a_failed_connection_are_recovered(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite3"
    _make_db(path, "old")
    wrapper = _scratch(path)["default"]
    assert _read(wrapper) == "old"
    kept = wrapper.connection
    wrapper.close_if_unusable_or_obsolete()  # as at the start of every call: kept
    assert _read(wrapper) == "old" and wrapper.connection is kept

    # A restore replaces the file: a call once the file is looked at again opens the new
    # one, not the old inode.
    _make_db(tmp_path / "restored.sqlite3", "new")
    (tmp_path / "restored.sqlite3").replace(path)
    time.sleep(sqlite_backend.FILE_CHECK_SECONDS)
    wrapper.close_if_unusable_or_obsolete()
    assert _read(wrapper) == "new" and wrapper.connection is not kept

    # A query that fails on a broken connection: the end of the call replaces it.
    wrapper.connection.close()
    with pytest.raises(DatabaseError):
        _read(wrapper)
    wrapper.close_if_unusable_or_obsolete()
    assert _read(wrapper) == "new"
    wrapper.close()


@needs_sqlite
def test_the_check_before_each_call_runs_no_query_but_the_one_after_an_error_does(
    tmp_path: Path,
) -> None:
    """Before each call's first query the connection is only looked at (a query would give
    the interpreter's lock away and wait for it); after a database error it must answer."""
    path = tmp_path / "site.sqlite3"
    _make_db(path, "v")
    wrapper = _scratch(path)["default"]
    _read(wrapper)
    ran: list[str] = []
    wrapper.connection.set_trace_callback(ran.append)
    for _ in range(3):
        wrapper.close_if_unusable_or_obsolete()
        assert _read(wrapper) == "v"
    assert ran == ["SELECT v FROM t"] * 3

    ran.clear()
    with pytest.raises(DatabaseError):
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT nothing FROM t")
    wrapper.close_if_unusable_or_obsolete()
    assert ran == ["SELECT 1"] and not wrapper.errors_occurred
    wrapper.close()


@needs_sqlite
@on_the_loop
async def test_a_request_threads_connection_is_closed_when_its_thread_ends(
    opened: Opened,
) -> None:
    """Django's handler serves each page request in a thread of its own: the connection it
    kept is closed with the thread, not left for the garbage collector."""

    def query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    async with ThreadSensitiveContext():
        await sync_to_async(query)()
        (thread, raw), *_ = opened.seen
        assert is_open(raw)  # type: ignore[arg-type]
    assert thread != await sync_to_async(threading.get_ident)()
    assert not is_open(raw)  # type: ignore[arg-type]


def test_a_turn_starts_in_one_call_with_the_fewest_queries(
    member: User, conversation: Conversation, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    """Ownership, the session, the model and the admission's limits are all checked in the
    one call that begins the turn: the conversation with its owner, the session, then
    BEGIN, the conversation's messages (no reply streaming; the history), both new
    messages in one INSERT, the conversation, COMMIT. The owner's limits were read within
    the second (each turn's admission reads them too)."""
    session = SocketSession(member.pk, session_cookie(member), member.get_session_auth_hash())
    limits.effective_limits(member)
    with django_assert_max_num_queries(7):
        turn = begin(session, conversation.pk, "send", {"content": "hi", "model": MODEL}, [MODEL])
    assert isinstance(turn, services.Turn)
    assert turn.messages[-1] == {"role": "user", "content": "hi"}
    assert turn.reply.status == Message.Status.STREAMING
