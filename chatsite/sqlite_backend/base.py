"""Django's SQLite backend with a health check that can fail, for persistent connections.

On SQLite, chatsite keeps each thread's connection open (`CONN_MAX_AGE`), so that the one
sync thread that serves the chat sockets does not open a new one for every ORM call
(docs/architecture.md). Django's SQLite backend reports every connection as usable, so
neither `CONN_HEALTH_CHECKS` nor its check after a database error would ever replace a
broken one. Here a connection is usable when it is open and the database file at its path
is still the one it opened (a file replaced under a running server, as by a restore, would
otherwise keep being used through the old connection); after a database error it must
also answer a query.

The routine check, before the first query of every call, does no I/O: each query or
system call lets the interpreter's lock go, and on a worker whose event loop is busy,
getting it back costs the sync thread up to a switch interval. So it looks at the file
at most once every FILE_CHECK_SECONDS; the check after an error always does both.

A thread's connection is closed when the thread ends: Django's handler serves each page
request in a thread of its own, and the thread's connection, kept for reuse, would
otherwise stay open until the garbage collector found it; the sync thread's is closed when
the worker stops and its threads end.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

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

# A database file replaced under a running server is noticed within this many seconds.
FILE_CHECK_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    """The SQLite backend whose health check looks at the connection and its file."""

    opened_file: tuple[int, int] | None = None
    file_checked_at = 0.0  # time.monotonic() of the last look at the file

    def get_new_connection(self, conn_params: dict) -> sqlite3.Connection:
        connection = super().get_new_connection(conn_params)
        self.opened_file = file_identity(self.settings_dict["NAME"])
        self.file_checked_at = time.monotonic()
        if not self.is_in_memory_db():  # closing an in-memory database would drop it
            closers = _thread.__dict__.setdefault("closers", {})
            closers[self.alias] = _ClosedWithThread(connection)
        return connection

    def is_usable(self) -> bool:
        """Open and on its file; after a database error, also answering a query."""
        after_error = self.errors_occurred  # Django asks then, and before each call's query
        try:
            if after_error:
                self.connection.execute("SELECT 1").fetchone()
            else:
                self.connection.in_transaction  # noqa: B018 (raises once closed; no I/O)
        except sqlite3.Error:
            return False
        return self._on_its_file(always=after_error)

    def _on_its_file(self, always: bool) -> bool:
        """Whether the file at the database's path is the one this connection opened;
        looked at only once every FILE_CHECK_SECONDS unless `always`."""
        now = time.monotonic()
        if self.opened_file is None or (
            not always and now - self.file_checked_at < FILE_CHECK_SECONDS
        ):
            return True
        self.file_checked_at = now
        return file_identity(self.settings_dict["NAME"]) == self.opened_file
