"""The read models on PostgreSQL: :class:`PgReadModels` runs :class:`~projections.queries.ReadModelQueries`
(the same statements, methods, return values and page tokens as on SQLite).

``connection_factory()`` is a context manager yielding a psycopg connection, e.g. a pool's ``.connection``:
each method checks a connection out, runs one statement (one committed snapshot) and gives it back. Rows are
read with a tuple row factory whatever the connection's default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from projections.queries import MAX_PAGE_SIZE, InvalidPageToken, ReadModelQueries

__all__ = ["MAX_PAGE_SIZE", "ConnectionFactory", "InvalidPageToken", "PgReadModels", "PgRows"]

ConnectionFactory = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class PgRows:
    """A stored-rows reader over a psycopg connection for :func:`projections.verify.compare`."""

    placeholder = "%s"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def fetchall(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()


class PgReadModels(ReadModelQueries):
    """Queries over the tables named ``prefix + table`` (see :mod:`ledger.adapters.postgres.read_schema`)."""

    def __init__(self, connection_factory: ConnectionFactory, *, prefix: str = "") -> None:
        super().__init__(prefix=prefix, placeholder="%s")
        self._connect = connection_factory

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()
