"""Fixtures for the chat: a mock upstream, a connection to it, sockets with a session."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import User
from chatsite.asgi import application
from conversations import runner
from conversations.models import Conversation, Message
from llm.models import Connection
from tests.mock_upstream import MockUpstream

MODEL = "llama3.2:latest"


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstream]:
    """One mock upstream for the session (Ollama at upstream.url)."""
    with MockUpstream() as mock:
        yield mock


@pytest.fixture
def mock(upstream: MockUpstream) -> Iterator[MockUpstream]:
    """The session's mock, reset to its default script for this test."""
    upstream.reset()
    yield upstream
    upstream.reset()


@pytest.fixture
def connection(mock: MockUpstream, transactional_db: None) -> Connection:
    return Connection.objects.create(name="local", kind="ollama", base_url=mock.url)


@pytest.fixture
def conversation(member: User, connection: Connection) -> Conversation:
    return Conversation.objects.create(owner=member, model=MODEL)


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Socket:
    """A WebsocketCommunicator speaking to the chat consumer like htmx's ws extension."""

    def __init__(
        self,
        conversation_id: int,
        cookie: str,
        origin: str = "http://localhost",
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        headers = [(b"host", b"localhost"), (b"origin", origin.encode()), *(headers or [])]
        if cookie:
            headers.append((b"cookie", f"sessionid={cookie}".encode()))
        self.communicator = WebsocketCommunicator(
            application, f"/ws/c/{conversation_id}/", headers=headers
        )
        self.frames: list[str] = []

    async def connect(self) -> tuple[bool, int | str | None]:
        return await self.communicator.connect(timeout=3)

    async def send(self, **data: object) -> None:
        await self.communicator.send_json_to({**data, "HEADERS": {"HX-Request": "true"}})

    async def receive(self, within: float = 3) -> str:
        frame = await self.communicator.receive_from(timeout=within)
        self.frames.append(frame)
        return frame

    async def receive_until(self, pattern: str, within: float = 5) -> str:
        """Frames until one matches `pattern` (a regex); returns that frame."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                if left <= 0:
                    raise TimeoutError
                frame = await self.receive(within=left)
            except TimeoutError:
                tail = "\n".join(self.frames[-3:])
                raise AssertionError(
                    f"no frame matching {pattern!r} in {within} s:\n{tail}"
                ) from None
            if re.search(pattern, frame):
                return frame

    async def drain(self, quiet: float = 0.2) -> list[str]:
        frames = []
        while not await self.communicator.receive_nothing(timeout=quiet):
            frames.append(await self.receive())
        return frames

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def sockets(member: User) -> AsyncIterator[object]:
    """Open sockets as the member (or anyone); all are closed and runners awaited after."""
    opened: list[Socket] = []
    cookie = await database_sync_to_async(session_cookie)(member)

    async def open_socket(conversation_id: int, *, user_cookie: str | None = None, **kw):  # type: ignore[no-untyped-def]
        socket = Socket(conversation_id, cookie if user_cookie is None else user_cookie, **kw)
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        try:
            await socket.close()
        except Exception:
            pass
    await runner.wait_for_runners()


async def reply_of(conversation: Conversation) -> Message:
    """The conversation's last reply, fresh from the database."""
    return await Message.objects.filter(
        conversation=conversation, role=Message.Role.ASSISTANT
    ).alast()
