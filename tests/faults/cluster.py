"""Several real Daphne workers sharing the test database and one Redis, and pages on them.

A `Page` is a chat websocket opened the way the browser opens it (session cookie, the
worker's own Origin), read frame by frame.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests import live


@contextmanager
def workers(count: int = 2, env: dict[str, str] | None = None) -> Iterator[list[live.Worker]]:
    """`count` Daphne workers on the same database and Redis."""
    with ExitStack() as stack:
        yield [stack.enter_context(live.daphne_worker(env)) for _ in range(count)]


class Page:
    """A chat page's websocket on one worker."""

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

    def close(self) -> None:
        try:
            self.exits.close()
        except ConnectionClosed:
            pass


def wait_until(check: object, within: float = 10, every: float = 0.1) -> float:
    """Poll `check()` until it is true; the seconds it took (AssertionError at the deadline)."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        if check():  # type: ignore[operator]
            return time.monotonic() - began
        time.sleep(every)
    raise AssertionError(f"{check} did not hold within {within} s")


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
