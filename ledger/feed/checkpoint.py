"""Where the feed relay remembers how far it has published: ``feed_checkpoint(name, position)``.

A checkpoint is the global position of the last event whose publication JetStream acknowledged; 0 (the
default) means nothing yet. ``save`` overwrites, so an operator may move a checkpoint back to republish.

Two implementations of :class:`CheckpointStore`: :class:`SqliteCheckpoints` (a table in any SQLite file,
typically the event store's) and :class:`PostgresCheckpoints` (psycopg 3, e.g. next to the PostgreSQL store).
Both create the table on first use.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    import psycopg

TABLE: Final = "feed_checkpoint"

_SQLITE_DDL: Final = f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position INTEGER NOT NULL)"
_SQLITE_LOAD: Final = f"SELECT position FROM {TABLE} WHERE name = ?"
_SQLITE_SAVE: Final = (
    f"INSERT INTO {TABLE} (name, position) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)

_PG_DDL: Final = f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
_PG_LOAD: Final = f"SELECT position FROM {TABLE} WHERE name = %s"
_PG_SAVE: Final = (
    f"INSERT INTO {TABLE} (name, position) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"
)


class CheckpointStore(Protocol):
    def load(self, name: str) -> int:
        """The saved position of ``name``; 0 if none was saved."""
        ...

    def save(self, name: str, position: int) -> None:
        """Durably set the position of ``name``."""
        ...


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


class PostgresCheckpoints:
    """Checkpoints in PostgreSQL. ``connect()`` gives a connection as a context manager.

    Both ``lambda: psycopg.connect(dsn)`` (a new connection each call, closed after it) and ``pool.connection``
    of a ``psycopg_pool.ConnectionPool`` (borrowed and returned) fit. Each call commits its own transaction.
    """

    def __init__(self, connect: Callable[[], AbstractContextManager[psycopg.Connection[tuple[Any, ...]]]]) -> None:
        self._connect = connect
        self._ready = False

    def _ensure(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        if not self._ready:
            conn.execute(_PG_DDL)
            self._ready = True

    def load(self, name: str) -> int:
        with self._connect() as conn:
            self._ensure(conn)
            row = conn.execute(_PG_LOAD, (name,)).fetchone()
            conn.commit()
            return 0 if row is None else int(row[0])

    def save(self, name: str, position: int) -> None:
        with self._connect() as conn:
            self._ensure(conn)
            conn.execute(_PG_SAVE, (name, position))
            conn.commit()
