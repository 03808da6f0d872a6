"""Feed checkpoints in PostgreSQL (beside the read models): the last position relayed, per checkpoint name."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

import psycopg

from ledger.feed.checkpoint import TABLE

_PG_DDL: Final = f"CREATE TABLE IF NOT EXISTS {TABLE} (name TEXT PRIMARY KEY, position BIGINT NOT NULL)"


_PG_LOAD: Final = f"SELECT position FROM {TABLE} WHERE name = %s"


_PG_SAVE: Final = (
    f"INSERT INTO {TABLE} (name, position) VALUES (%s, %s) "
    "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"
)


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
