"""Feed checkpoints in SQLite (beside the read models): the last position relayed, per checkpoint name."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Final

from ledger.feed.checkpoint import TABLE

_SQLITE_DDL: Final = f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"


_SQLITE_LOAD: Final = f"SELECT position FROM {TABLE} WHERE name = ?"


_SQLITE_SAVE: Final = (
    f"INSERT INTO {TABLE} (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)


class SqliteCheckpoints:
    """Checkpoints in a SQLite file, over one connection made by ``connect`` on first use.

    ``connect`` may be e.g. ``lambda: sqlite3.connect(path, isolation_level=None)``; the connection is used from
    whichever thread calls (under a lock), so make it with ``check_same_thread=False``, or call from one thread.
    :meth:`SqliteCheckpoints.at` opens the file itself.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @classmethod
    def at(cls, path: str, *, busy_timeout: float = 5.0) -> SqliteCheckpoints:
        return cls(lambda: sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = self._connect()
            conn.execute(_SQLITE_DDL)
            if conn.in_transaction:
                conn.commit()
            self._conn = conn
        return self._conn

    def load(self, name: str) -> int:
        with self._lock:
            row = self._connection().execute(_SQLITE_LOAD, (name,)).fetchone()
            return 0 if row is None else int(row[0])

    def save(self, name: str, position: int) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute(_SQLITE_SAVE, (name, position))
            if conn.in_transaction:
                conn.commit()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
