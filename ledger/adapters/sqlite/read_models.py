"""The read models on SQLite: :class:`SqliteReadModels` runs :class:`~projections.queries.ReadModelQueries`
on connections from its factory (for the embedded store ``SqliteEventStore.read_connection``, one per thread).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from projections.queries import MAX_PAGE_SIZE, InvalidPageToken, ReadModelQueries

__all__ = ["MAX_PAGE_SIZE", "InvalidPageToken", "SqliteReadModels"]


class SqliteReadModels(ReadModelQueries):
    """Queries over the tables named ``prefix + table`` (see :mod:`ledger.adapters.sqlite.read_schema`)."""

    def __init__(self, connection_factory: Callable[[], sqlite3.Connection], *, prefix: str = "") -> None:
        super().__init__(prefix=prefix, placeholder="?")
        self._connect = connection_factory

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self._connect().execute(sql, params).fetchall()
