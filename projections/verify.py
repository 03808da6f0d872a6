"""Checking stored projection rows against rows computed afresh from the log.

:func:`compare` reads one member's stored rows and compares them, row by row and field by field, with the
rows of a freshly folded state (:func:`projections.rows.member_rows`) and its full history. Each difference
is a :class:`Mismatch`: a missing row, an unexpected row, or a field whose value differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from projections.rows import DueRow, HistoryRow, MemberRows
from projections.sqlite_codec import (
    BALANCE,
    DUE,
    ENTITLEMENT,
    HISTORY,
    LOT,
    MEMBERSHIP,
    TIER,
    RowCodec,
)

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


def _stored(
    conn: sqlite3.Connection, codec: RowCodec[Any], prefix: str, program_id: str, member_id: str
) -> dict[tuple[Any, ...], Any]:
    sql = f"{codec.select(prefix + codec.table)} WHERE program_id = ? AND member_id = ?"
    rows = conn.execute(sql, (program_id, member_id)).fetchall()
    return {codec.key_of(r): codec.decode(r) for r in rows}


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
    conn: sqlite3.Connection,
    program_id: str,
    member_id: str,
    *,
    due: DueRow | None = None,
    prefix: str = "",
) -> list[Mismatch]:
    """Every difference between the stored rows of one member and ``expected`` plus its full ``history``.

    ``due``, when given, is compared with the stored ``due`` row too (the due time needs the program's
    rules, which the caller has). Identities are checked both ways: each expected identity must resolve to
    this member, and no other identity may.
    """
    if (expected.balance.program_id, expected.balance.member_id) != (program_id, member_id):
        raise ValueError(
            f"expected rows are of {expected.balance.program_id}/{expected.balance.member_id}, not {program_id}/{member_id}"
        )
    out: list[Mismatch] = []

    def one(codec: RowCodec[Any], rows: Sequence[Any]) -> None:
        _compare_rows(out, codec, rows, _stored(conn, codec, prefix, program_id, member_id))

    one(BALANCE, [expected.balance])
    one(TIER, [expected.tier])
    one(LOT, expected.lots)
    one(ENTITLEMENT, expected.entitlements)
    one(MEMBERSHIP, expected.memberships)
    one(HISTORY, history)
    if due is not None:
        one(DUE, [due])

    wanted = {row.identity for row in expected.identities}
    for identity in sorted(wanted):
        found = conn.execute(
            f"SELECT member_id FROM {prefix}identity WHERE program_id = ? AND identity = ?",
            (program_id, identity),
        ).fetchone()
        owner = None if found is None else found[0]
        if owner is None:
            out.append(Mismatch("identity", (program_id, identity), ROW, member_id, None))
        elif owner != member_id:
            out.append(Mismatch("identity", (program_id, identity), "member_id", member_id, owner))
    extra = conn.execute(
        f"SELECT identity FROM {prefix}identity WHERE program_id = ? AND member_id = ? ORDER BY identity",
        (program_id, member_id),
    ).fetchall()
    for (identity,) in extra:
        if identity not in wanted:
            out.append(Mismatch("identity", (program_id, identity), "member_id", None, member_id))
    return out
