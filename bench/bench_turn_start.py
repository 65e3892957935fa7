"""The database work of one chat turn, alone and beside a busy event loop.

Run from the repository root: `.venv/bin/python bench/bench_turn_start.py`.

A chat over the websocket makes these calls on the database thread, in this order: the auth
middleware's `get_user` (when the socket opens), `open_socket`, `begin` (the turn start),
`finish_reply` and the meter's `record` (the turn's end), each as the worker makes it (old
connections closed before and after, so the connection's health is checked again). For
each one this prints the SQL statements it runs and its CPU per call, first on an idle
process, then while another thread of the same process runs Python without pause, as the
worker's event loop does when it streams 150 replies: both threads then take turns at the
interpreter's lock, and every statement (SQLite and psycopg let the lock go while the
database works) waits for the other thread to give it back. The wall time per call
beside the busy thread is mostly those waits: how long the worker's one sync thread is
taken by a chat. The baseline (alone) is measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness import quiet_collector, set_up_django

MODEL = "llama3.2:latest"
ROUNDS = 3
WORKER_REPLIES = 150  # streaming replies in a worker's checkpoint
GROUP = 10  # charges in a group commit of the ledger


Calls = dict[str, Callable[[], object]]


def world(calls: int) -> tuple[Calls, Calls]:
    """A member with a session, `calls` conversations per measured round; a chat's calls,
    and the worker's own: a checkpoint of WORKER_REPLIES streaming replies (once a second),
    and GROUP charges written one by one or grouped."""
    from django.test import Client
    from django.utils import timezone

    from accounts.models import User
    from conversations import services
    from conversations.models import Conversation, Message
    from conversations.socket_sessions import SocketSession, begin, open_socket
    from usage import rollups
    from usage.models import Generation

    user = User.objects.create_user("bench", password="x", role=User.Role.ADMIN)
    client = Client()
    client.force_login(user)
    session_key = client.cookies["sessionid"].value
    session = SocketSession(user.pk, session_key, user.get_session_auth_hash())
    store = client.session.__class__
    conversations = iter(
        Conversation.objects.bulk_create(
            Conversation(owner=user, model=MODEL, last_message_at=timezone.now())
            for _ in range(calls * (2 * ROUNDS + 1) * 2)
        )
    )
    replies: list[Message] = []

    def start() -> None:
        turn = begin(session, next(conversations).pk, "send", {"content": "hi"}, [MODEL])
        replies.append(turn.reply)  # type: ignore[union-attr]

    def finish() -> None:
        services.finish_reply(replies.pop(), content="tok " * 300, status="complete")

    def charge() -> None:
        rollups.record(
            user_id=user.pk, api_key=None, door=Generation.Door.WEB, model=MODEL,
            connection="mock", prompt_tokens=10, completion_tokens=300,
            usage_source="upstream", status="ok", error="", started_at=timezone.now(),
            duration_ms=6000, ttft_ms=20,
        )  # fmt: skip

    streaming = Message.objects.bulk_create(
        Message(conversation=c, role="assistant", status="streaming", content="", model=MODEL)
        for c in Conversation.objects.bulk_create(
            Conversation(owner=user, model=MODEL) for _ in range(WORKER_REPLIES)
        )
    )
    texts = [(reply.pk, "tok " * 200) for reply in streaming]

    def charge_fields() -> dict:
        return {
            "user_id": user.pk, "door": Generation.Door.WEB, "model": MODEL,
            "connection": "mock", "prompt_tokens": 10, "completion_tokens": 300,
            "usage_source": "upstream", "status": "ok", "started_at": timezone.now(),
            "duration_ms": 6000, "ttft_ms": 20,
        }  # fmt: skip

    worker_calls: Calls = {
        f"checkpoint of {WORKER_REPLIES}": lambda: services.checkpoint_many(texts),
        f"{GROUP} charges alone": lambda: [rollups.record(**charge_fields()) for _ in range(GROUP)],
        f"{GROUP} charges grouped": lambda: rollups.record_many(
            [charge_fields() for _ in range(GROUP)]
        ),
    }
    chat_calls: Calls = {
        "get_user": lambda: _get_user(store(session_key)),
        "open_socket": lambda: open_socket(user.pk, next(conversations).pk),
        "begin": start,
        "finish_reply": finish,
        "record": charge,
    }
    return chat_calls, worker_calls


def _get_user(store: object) -> object:
    """What channels' `get_user` does on the database thread: the session, then the user."""
    from django.contrib.auth import get_user as django_get_user

    class Request:
        session = store

    return django_get_user(Request())  # type: ignore[arg-type]


def statements(call: Callable[[], object]) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


def as_a_hop(call: Callable[[], object]) -> Callable[[], object]:
    """`call` as the worker makes it, through `database_sync_to_async`: old connections
    closed before and after (which has the connection's health checked again at its first
    query: on SQLite, `chatsite.sqlite_backend`)."""
    from django.db import close_old_connections

    def hop() -> object:
        close_old_connections()
        try:
            return call()
        finally:
            close_old_connections()

    return hop


def per_call(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """CPU and wall time per call."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return (time.thread_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def best_of(
    rounds: int, calls: dict[str, Callable[[], object]], count: int
) -> dict[str, tuple[float, float]]:
    """Each call's CPU and wall time per call, each the lowest of `rounds` rounds (as
    `timeit` advises)."""
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, call in calls.items():
            cpu, wall = per_call(call, count)
            low_cpu, low_wall = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(low_cpu, cpu), min(low_wall, wall))
    return best


def measure(calls: Calls, count: int) -> tuple[dict, dict, dict]:
    """Each call made as a hop: its statements, then its CPU and wall time alone and
    beside a busy thread (`best_of` `count` calls)."""
    hops = {name: as_a_hop(call) for name, call in calls.items()}
    with quiet_collector():
        alone = best_of(ROUNDS, hops, count)
        # Counted once warm: a person's first charge of the day creates its rollup rows.
        counts = {name: statements(call) for name, call in hops.items()}
        with BusyThread():
            busy = best_of(ROUNDS, hops, count)
    return counts, alone, busy


def row(name: str, statements: int, alone: float, busy: float, wall: float) -> str:
    return (
        f"{name:>20}  {statements:>10}  {alone * 1e3:6.2f} ms  {busy * 1e3:20.2f} ms"
        f"  {busy / alone:5.2f}x  {wall * 1e3:10.2f} ms"
    )


class BusyThread:
    """A thread that runs Python without pause, as a saturated event loop does."""

    def __init__(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        total = 0
        while self.running:
            for i in range(1000):
                total += i

    def __enter__(self) -> BusyThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150, help="calls per measurement")
    args = parser.parse_args()
    redis_process = set_up_django(Path(tempfile.mkdtemp(prefix="chatsite-bench-")))
    from llm.models import Connection

    Connection.objects.create(name="mock", kind="ollama", base_url="http://127.0.0.1:9")
    try:
        chat_calls, worker_calls = world(args.calls)
        counts, alone, busy = measure(chat_calls, args.calls)
        print(f"{'call':>20}  statements  CPU alone  CPU beside a busy thread  ratio  (wall time)")
        for name in chat_calls:
            print(row(name, counts[name], alone[name][0], *busy[name]))
        print(
            row(
                "one chat",
                sum(counts.values()),
                *(
                    sum(times[name][i] for name in chat_calls)
                    for times, i in ((alone, 0), (busy, 0), (busy, 1))
                ),
            )
        )
        counts, alone, busy = measure(worker_calls, 10)
        print()
        for name in worker_calls:
            print(row(name, counts[name], alone[name][0], *busy[name]))
    finally:
        if redis_process is not None:
            from chatsite.embedded import stop

            stop(redis_process)


if __name__ == "__main__":
    main()
