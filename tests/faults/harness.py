"""Real faults for tests: a private Redis a test can stop and start again, a Daphne that uses
it, and a signed-in chat socket opened the way the browser opens it.

    with redis_server() as redis, daphne_on(redis) as worker:
        with chat_socket(worker, conversation.pk, session_for(user)) as page:
            redis.stop()
            page.send(action="send", content="hi", model=MODEL)
            page.wait_for("cannot be reached")
            redis.start()  # the same URL again, with what its append-only file kept

The Daphne shares the test database (tests that use it need `transactional_db`), so
anything the test saves is what the server reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed

from chatsite.embedded import start_redis, stop
from tests import live
from tests.faults.cluster import Page

ABNORMAL_CLOSURE = 1006


class RedisServer:
    """A private redis-server on a unix socket of its own; `stop()` and `start()` keep the
    URL, so a server configured with it sees Redis go away and come back (with the data its
    append-only file kept, as the embedded Redis of `make run` does)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"unix://{directory / 'redis.sock'}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if not self.running:
            self.process, self.url = start_redis(self.directory)

    def stop(self) -> None:
        """Stop it (SIGTERM, SIGKILL if it lingers); clients get connection errors."""
        stop(self.process)
        self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running private Redis, stopped and removed at the end."""
    # Under the run's DATA_DIR: short enough for a unix socket path, removed with it.
    directory = Path(tempfile.mkdtemp(prefix="redis-", dir=settings.DATA_DIR))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def daphne_on(redis: RedisServer, extra_env: dict[str, str] | None = None) -> Iterator[live.Worker]:
    """A real Daphne whose Redis (channel layer, meter, snapshots) is `redis`."""
    with live.daphne_worker({"REDIS_URL": redis.url, **(extra_env or {})}) as worker:
        yield worker


def session_for(user: object) -> str:
    """The session cookie of a new signed-in session of `user` (in the test database)."""
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class ChatSocket(Page):
    """A chat page's websocket on a live worker (session cookie, the worker's Origin)."""

    def close_code(self, within: float = 5) -> int:
        """Read (and keep) frames until the server closes; the close code it sent, or 1006
        (what a browser reports) when it dropped the connection without a close frame."""
        deadline = time.monotonic() + within
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.frames.append(str(self.socket.recv(timeout=left)))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else ABNORMAL_CLOSURE
        except TimeoutError:
            pass
        raise AssertionError(f"the socket was not closed within {within} s")


@contextmanager
def chat_socket(worker: live.Worker, conversation_id: int, session: str) -> Iterator[ChatSocket]:
    """An open chat socket, closed at the end."""
    socket = ChatSocket(worker, conversation_id, session)
    try:
        yield socket
    finally:
        socket.close()


def tracebacks(worker: live.Worker) -> list[str]:
    """The log records of a worker that carry a traceback, each from its first line (the
    time, level and logger) through its chained exceptions."""
    records: list[list[str]] = []
    for line in worker.log().splitlines():
        if _RECORD.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    return [
        "\n".join(lines) for lines in records if any(line.startswith("Traceback") for line in lines)
    ]


# A log line of its own: a logging record (timestamp first) or a Daphne access line.
_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|\d+\.\d+\.\d+\.\d+:\d+ ")
