"""Django's SQLite backend with a health check that can fail, for persistent connections.

On SQLite, chatsite keeps each thread's connection open (`CONN_MAX_AGE`), so that the one
sync thread that serves the chat sockets does not open a new one for every ORM call
(docs/architecture.md). Django's SQLite backend reports every connection as usable, so
neither `CONN_HEALTH_CHECKS` nor its check after a database error would ever replace a
broken one. Here a connection is usable when it still answers a query and the database
file at its path is still the one it opened (a file replaced under a running server, as
by a restore, would otherwise keep being used through the old connection).

A thread's connection is closed when the thread ends: Django's handler serves each page
request in a thread of its own, and the thread's connection, kept for reuse, would
otherwise stay open until the garbage collector found it; the sync thread's is closed when
the worker stops and its threads end.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from django.db.backends.sqlite3 import base

__all__ = ["DatabaseWrapper"]


def file_identity(name: object) -> tuple[int, int] | None:
    """The device and inode of the database file at `name`; None for an in-memory
    database or when there is no file there."""
    path = str(name)
    if not path or path == ":memory:" or "mode=memory" in path:
        return None
    try:
        found = os.stat(path.removeprefix("file:").split("?", 1)[0])
    except OSError:
        return None
    return found.st_dev, found.st_ino


class _ClosedWithThread:
    """Held in thread-local storage: closes its DB-API connection when the thread ends
    (or when the thread opens another for the same database)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __del__(self) -> None:
        self.connection.close()


_thread = threading.local()


class DatabaseWrapper(base.DatabaseWrapper):
    """The SQLite backend whose health check queries the connection and its file."""

    opened_file: tuple[int, int] | None = None

    def get_new_connection(self, conn_params: dict) -> sqlite3.Connection:
        connection = super().get_new_connection(conn_params)
        self.opened_file = file_identity(self.settings_dict["NAME"])
        if not self.is_in_memory_db():  # closing an in-memory database would drop it
            closers = _thread.__dict__.setdefault("closers", {})
            closers[self.alias] = _ClosedWithThread(connection)
        return connection

    def is_usable(self) -> bool:
        try:
            self.connection.execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        current = file_identity(self.settings_dict["NAME"])
        return self.opened_file is None or current == self.opened_file
