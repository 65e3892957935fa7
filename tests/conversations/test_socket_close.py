"""A page that closes its socket while the worker is sending to it: the consumer ends as on
any close, with nothing raised to the server (no "Exception inside application")."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from accounts.models import User
from chatsite.asgi import application
from conversations.models import Conversation, Message
from tests.conversations.conftest import session_cookie


class ClosingPage:
    """An ASGI server's side of a websocket whose page went away as it was accepted: every
    frame sent to it raises OSError, as the ASGI spec has servers do."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict] = asyncio.Queue()
        self.sent: list[str] = []
        self.refused: list[dict] = []

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send(self, message: dict) -> None:
        self.sent.append(message["type"])
        if message["type"] == "websocket.send":
            self.refused.append(message)
            raise OSError("the connection is closed")


@pytest.mark.django_db(transaction=True)
async def test_a_frame_to_a_page_gone_ends_the_socket_quietly(
    member: User, conversation: Conversation
) -> None:
    await conversation.messages.acreate(role=Message.Role.USER, content="Hello?")
    await conversation.messages.acreate(role=Message.Role.ASSISTANT, content="Hi!")
    cookie = await database_sync_to_async(session_cookie)(member)
    scope = {
        "type": "websocket",
        "path": f"/ws/c/{conversation.pk}/",
        "raw_path": f"/ws/c/{conversation.pk}/".encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"localhost"),
            (b"origin", b"http://localhost"),
            (b"cookie", f"sessionid={cookie}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    page = ClosingPage()
    await page.inbox.put({"type": "websocket.connect"})
    running = asyncio.ensure_future(application(scope, page.receive, page.send))
    for _ in range(100):  # the first frame, the latest turn, was tried
        if page.refused:
            break
        await asyncio.sleep(0.02)
    assert page.sent[:2] == ["websocket.accept", "websocket.send"]
    await page.inbox.put({"type": "websocket.disconnect", "code": 1001})
    async with asyncio.timeout(5):
        await running  # raises if the consumer let the OSError out
