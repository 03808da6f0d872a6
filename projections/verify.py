"""Checking stored projection rows against rows computed afresh from the log.

:func:`compare` reads one member's stored rows and compares them, row by row and field by field, with the
rows of a freshly folded state (:func:`projections.rows.member_rows`) and its full history. Each difference
is a :class:`Mismatch`: a missing row, an unexpected row, or a field whose value differs.

The stored rows come from any database holding the tables (SQLite or PostgreSQL; both store them the same
way, see :mod:`projections.codec`): pass a ``sqlite3.Connection``, any :class:`StoredRows` reader (such
as :class:`ledger.adapters.postgres.read_models.PgRows` over a psycopg connection), or another DB-API connection together
with its ``placeholder`` (``"%s"`` for psycopg).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from projections.codec import (
    BALANCE,
    DUE,
    HISTORY,
    LOT,
    STANDING,
    TIER,
    RowCodec,
)
from projections.rows import DueRow, HistoryRow, MemberRows

ROW: Final = "(row)"
"""The ``field`` of a mismatch about a whole row: ``expected`` or ``actual`` is None (missing/unexpected)."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    table: str
    key: tuple[Any, ...]
    field: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        where = f"{self.table}[{'/'.join(str(k) for k in self.key)}]"
        if self.field == ROW:
            return f"{where}: missing row" if self.actual is None else f"{where}: unexpected row"
        return f"{where}.{self.field}: expected {self.expected!r}, found {self.actual!r}"


@runtime_checkable
class StoredRows(Protocol):
    """Where :func:`compare` reads stored rows from: plain tuples in column order."""

    placeholder: str
    """The parameter mark of the statements it runs: ``"?"`` (sqlite3) or ``"%s"`` (psycopg)."""

    def fetchall(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]: ...


class DbApiConnection(Protocol):
    def cursor(self) -> Any: ...


class DbApiRows:
    """:class:`StoredRows` over a DB-API connection (``sqlite3`` or another driver returning tuples)."""

    def __init__(self, conn: DbApiConnection, placeholder: str = "?") -> None:
        self.conn = conn
        self.placeholder = placeholder

    def fetchall(self, sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())
        finally:
            cur.close()


def stored_rows(
    source: sqlite3.Connection | StoredRows | DbApiConnection, placeholder: str | None = None
) -> StoredRows:
    """A :class:`StoredRows` for ``source``: itself if it is one; a psycopg connection read with tuple rows
    and ``%s`` marks; any other DB-API connection with ``placeholder`` (default ``"?"``, as ``sqlite3``)."""
    if isinstance(source, StoredRows):
        return source
    if placeholder is None and type(source).__module__.partition(".")[0] == "psycopg":
        placeholder = "%s"  # psycopg's cursors return tuples unless told otherwise
    return DbApiRows(source, placeholder or "?")


def _stored(
    rows: StoredRows, codec: RowCodec[Any], prefix: str, program_id: str, member_id: str
) -> dict[tuple[Any, ...], Any]:
    m = rows.placeholder
    sql = f"{codec.select(prefix + codec.table)} WHERE program_id = {m} AND member_id = {m}"
    found = rows.fetchall(sql, (program_id, member_id))
    return {codec.key_of(r): codec.decode(r) for r in found}


def _compare_rows(
    out: list[Mismatch],
    codec: RowCodec[Any],
    expected: Sequence[Any],
    stored: dict[tuple[Any, ...], Any],
) -> None:
    columns = codec.columns
    stored = dict(stored)
    for row in expected:
        key = tuple(getattr(row, k) for k in codec.key)
        actual = stored.pop(key, None)
        if actual is None:
            out.append(Mismatch(codec.table, key, ROW, row, None))
            continue
        for name in columns:
            want, got = getattr(row, name), getattr(actual, name)
            if want != got:
                out.append(Mismatch(codec.table, key, name, want, got))
    for key, actual in stored.items():
        out.append(Mismatch(codec.table, key, ROW, None, actual))


def compare(
    expected: MemberRows,
    history: Sequence[HistoryRow],
    conn: sqlite3.Connection | StoredRows | DbApiConnection,
    program_id: str,
    member_id: str,
    *,
    due: DueRow | None = None,
    prefix: str = "",
    placeholder: str | None = None,
) -> list[Mismatch]:
    """Every difference between the stored rows of one member and ``expected`` plus its full ``history``.

    ``due``, when given, is compared with the stored ``due`` row too (the due time needs the program's
    rules, which the caller has). Identities are checked both ways: each expected identity must resolve to
    this member, and no other identity may.

    ``conn`` is where the stored rows are read: a ``sqlite3.Connection``, a :class:`StoredRows` reader, or a
    DB-API connection whose parameter mark is ``placeholder`` (see :func:`stored_rows`).
    """
    if (expected.balance.program_id, expected.balance.member_id) != (program_id, member_id):
        raise ValueError(
            f"expected rows are of {expected.balance.program_id}/{expected.balance.member_id}, not {program_id}/{member_id}"
        )
    out: list[Mismatch] = []
    reader = stored_rows(conn, placeholder)
    m = reader.placeholder

    def one(codec: RowCodec[Any], rows: Sequence[Any]) -> None:
        _compare_rows(out, codec, rows, _stored(reader, codec, prefix, program_id, member_id))

    one(BALANCE, [expected.balance])
    one(TIER, [expected.tier])
    one(STANDING, [expected.standing])
    one(LOT, expected.lots)
    one(HISTORY, history)
    if due is not None:
        one(DUE, [due])

    wanted = {row.identity for row in expected.identities}
    for identity in sorted(wanted):
        found = reader.fetchall(
            f"SELECT member_id FROM {prefix}identity WHERE program_id = {m} AND identity = {m}",
            (program_id, identity),
        )
        owner = found[0][0] if found else None
        if owner is None:
            out.append(Mismatch("identity", (program_id, identity), ROW, member_id, None))
        elif owner != member_id:
            out.append(Mismatch("identity", (program_id, identity), "member_id", member_id, owner))
    extra = reader.fetchall(
        f"SELECT identity FROM {prefix}identity WHERE program_id = {m} AND member_id = {m} ORDER BY identity",
        (program_id, member_id),
    )
    for (identity,) in extra:
        if identity not in wanted:
            out.append(Mismatch("identity", (program_id, identity), "member_id", None, member_id))
    return out
