"""Fixtures of the fault tests: the chat's mock upstream (`upstream`, reset for each test as
`mock`), a connection to it and a conversation of `member`."""

from __future__ import annotations

from tests.conversations.conftest import connection, conversation, mock, upstream

__all__ = ["connection", "conversation", "mock", "upstream"]
