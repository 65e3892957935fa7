"""Real faults for tests: a private Redis a test can stop and start again, real Daphne
workers on it (`tests.live`), and what a test watches them with: a signed-in chat socket
opened the way the browser opens it, an API stream, the workers' tracebacks.

    with redis_server() as redis, daphne_on(redis) as worker:
        with chat_socket(worker, conversation.pk, session_for(user)) as page:
            redis.stop()
            page.send(action="send", content="hi", model=MODEL)
            page.wait_for("cannot be reached")
            redis.start()  # the same URL again, with what its append-only file kept

The workers share the test database (tests that use them need `transactional_db`), so
anything the test saves is what they read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
from django.conf import settings
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from chatsite.embedded import start_redis, stop
from tests import live

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


class ChatSocket:
    """A chat page's websocket on a live worker (session cookie, the worker's Origin),
    read frame by frame; every frame read is kept in `frames`."""

    def __init__(self, worker: live.Worker, conversation_id: int, session: str) -> None:
        ws_url = worker.url.replace("http://", "ws://")
        self.exits = ExitStack()
        self.socket: ClientConnection = self.exits.enter_context(
            connect(
                f"{ws_url}/ws/c/{conversation_id}/",
                origin=worker.url,
                additional_headers={"Cookie": f"sessionid={session}"},
                open_timeout=5,
            )
        )
        self.frames: list[str] = []

    def send(self, **data: object) -> None:
        self.socket.send(json.dumps(data))

    def wait_for(self, pattern: str, within: float = 10) -> str:
        """Frames until one matches `pattern` (a regex); that frame."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = str(self.socket.recv(timeout=left))
            except TimeoutError:
                break
            self.frames.append(frame)
            if re.search(pattern, frame):
                return frame
        tail = "\n".join(frame[:300] for frame in self.frames[-3:])
        raise AssertionError(f"no frame matching {pattern!r} within {within} s:\n{tail}")

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

    def close(self) -> None:
        try:
            self.exits.close()
        except ConnectionClosed:
            pass


@contextmanager
def chat_socket(worker: live.Worker, conversation_id: int, session: str) -> Iterator[ChatSocket]:
    """An open chat socket, closed at the end."""
    socket = ChatSocket(worker, conversation_id, session)
    try:
        yield socket
    finally:
        socket.close()


@contextmanager
def stream_api(
    worker: live.Worker, key: str, model: str, content: str = "hi"
) -> Iterator[httpx.Response]:
    """An /api/chat stream on `worker`, open once its headers arrived; closed after."""
    with (
        httpx.Client(base_url=worker.url, timeout=10) as client,
        client.stream(
            "POST",
            "/api/chat",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": content}]},
        ) as response,
    ):
        yield response


def wait_until(check: Callable[[], object], within: float = 10, every: float = 0.1) -> float:
    """Poll `check()` until it is true; the seconds it took (AssertionError at the deadline)."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if check():
            return time.monotonic() - began
        time.sleep(every)
    raise AssertionError(f"{check} did not hold within {within} s")


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
