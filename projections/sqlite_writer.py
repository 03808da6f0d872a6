"""Writing the read models: :class:`SqliteProjector` turns member updates into rows in the caller's transaction.

The write path calls :meth:`SqliteProjector.apply` from the event store's ``in_transaction`` hook, so the rows
commit (or roll back) with the events they come from. The projector never begins, commits or rolls back.

For each member of a batch ``apply``

- replaces its ``balance``, ``tier_state`` and ``due`` rows;
- brings its ``lot``, ``entitlement`` and ``membership`` rows in line with the state: it reads the stored
  rows of the batch's members (one query per table and program, in chunks) and writes only the rows that are
  new or differ, and deletes rows the state no longer has, so a member with hundreds of closed lots costs a
  read, not a rewrite;
- inserts (or replaces: applying the same update twice is harmless) the history rows;
- points its new identities at itself (an identity absorbed by a merge moves to the surviving member);

and finally moves the checkpoint forward to the highest event position among the history rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from ledger.domain.state import MemberState
from projections.rows import HistoryRow, balance_row, entitlement_row, lot_row, membership_row, tier_row
from projections.sqlite_codec import (
    BALANCE,
    ENTITLEMENT,
    HISTORY,
    LOT,
    MEMBERSHIP,
    TIER,
    RowCodec,
    opt_micros,
)
from projections.sqlite_schema import create_tables

DEFAULT_CHECKPOINT: Final = "projections"
"""The checkpoint name the projector advances unless told otherwise."""

_CHUNK: Final = 400  # member ids per IN (...) list

Encoded = tuple[Any, ...]
MemberKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """One member's state after a write, with the history rows of the events it just got."""

    program_id: str
    member_id: str
    state: MemberState
    history: Sequence[HistoryRow] = ()
    due_at: datetime | None = None
    identities_added: Sequence[str] = ()


class SqliteProjector:
    """Writes the read-model tables named ``prefix + table`` on connections the caller owns."""

    def __init__(self, *, prefix: str = "", checkpoint_name: str = DEFAULT_CHECKPOINT) -> None:
        self.prefix = prefix
        self.checkpoint_name = checkpoint_name
        p = prefix
        self._sql_balance = BALANCE.insert(p + BALANCE.table, replace=True)
        self._sql_tier = TIER.insert(p + TIER.table, replace=True)
        self._sql_history = HISTORY.insert(p + HISTORY.table, replace=True)
        self._sql_history_fresh = HISTORY.insert(p + HISTORY.table)
        self._sql_due = f"INSERT OR REPLACE INTO {p}due (program_id, member_id, due_at) VALUES (?, ?, ?)"
        self._sql_identity = (
            f"INSERT OR REPLACE INTO {p}identity (program_id, identity, member_id) VALUES (?, ?, ?)"
        )
        self._sql_checkpoint = (
            f"INSERT INTO {p}projection_checkpoint (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)"
        )
        self._sql_set_checkpoint = (
            f"INSERT OR REPLACE INTO {p}projection_checkpoint (name, position) VALUES (?, ?)"
        )
        self._children: tuple[_Children, ...] = tuple(
            _Children(codec, p) for codec in (LOT, ENTITLEMENT, MEMBERSHIP)
        )

    # -- schema -----------------------------------------------------------------------------------------------

    def create_schema(self, conn: sqlite3.Connection, *, indexes: bool = True) -> None:
        """Create the tables (and indexes) that do not exist yet, on ``conn`` as it is (no commit)."""
        create_tables(conn, self.prefix, indexes=indexes)

    def create_schema_at(self, path: str | os.PathLike[str]) -> None:
        """Open the SQLite file at ``path``, create the missing tables in one transaction and close it."""
        conn = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=30.0)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self.create_schema(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    # -- writes -----------------------------------------------------------------------------------------------

    def apply(self, conn: sqlite3.Connection, updates: Sequence[MemberUpdate]) -> None:
        """Write ``updates`` on ``conn`` inside the caller's transaction (see the module docstring).

        When a member appears more than once, its last update gives the current rows and every update's
        history rows are written.
        """
        if not updates:
            return
        latest: dict[MemberKey, MemberUpdate] = {}
        history: list[Encoded] = []
        position = 0
        encode_history = HISTORY.encode
        for u in updates:
            state = u.state
            if state.program_id != u.program_id or state.member_id != u.member_id:
                raise ValueError(
                    f"update for {u.program_id}/{u.member_id} carries the state of {state.program_id}/{state.member_id}"
                )
            latest[(u.program_id, u.member_id)] = u
            for row in u.history:
                if row.program_id != u.program_id or row.member_id != u.member_id:
                    raise ValueError(
                        f"history row of {row.program_id}/{row.member_id} in the update of {u.member_id}"
                    )
                history.append(encode_history(row))
                if row.position > position:
                    position = row.position
        self._write_members(conn, latest.values(), fresh=False)
        if history:
            conn.executemany(self._sql_history, history)
        identities = [(u.program_id, i, u.member_id) for u in updates for i in u.identities_added]
        if identities:
            conn.executemany(self._sql_identity, identities)
        if position:
            conn.execute(self._sql_checkpoint, (self.checkpoint_name, position))

    def write_members(
        self, conn: sqlite3.Connection, updates: Iterable[MemberUpdate], *, fresh: bool
    ) -> None:
        """Write the current rows of ``updates`` (not their history or identities).

        ``fresh=True`` is for tables that hold nothing of these members yet (a rebuild): plain inserts, no
        reads. Otherwise the rows are synchronised as :meth:`apply` does.
        """
        self._write_members(conn, updates, fresh=fresh)

    def write_history(
        self, conn: sqlite3.Connection, rows: Iterable[HistoryRow], *, fresh: bool = False
    ) -> int:
        """Insert history rows (``fresh``: plain inserts into a table without them); return how many."""
        encoded = [HISTORY.encode(row) for row in rows]
        if encoded:
            conn.executemany(self._sql_history_fresh if fresh else self._sql_history, encoded)
        return len(encoded)

    def write_identities(self, conn: sqlite3.Connection, rows: Iterable[tuple[str, str, str]]) -> None:
        """Point identities at members: ``(program_id, identity, member_id)`` each."""
        conn.executemany(self._sql_identity, rows)

    def set_checkpoint(self, conn: sqlite3.Connection, position: int) -> None:
        """Set the checkpoint to ``position`` (it may move backwards: this is for rebuilds)."""
        conn.execute(self._sql_set_checkpoint, (self.checkpoint_name, position))

    def _write_members(
        self, conn: sqlite3.Connection, updates: Iterable[MemberUpdate], *, fresh: bool
    ) -> None:
        balances: list[Encoded] = []
        tiers: list[Encoded] = []
        dues: list[Encoded] = []
        lots: dict[MemberKey, list[Encoded]] = {}
        entitlements: dict[MemberKey, list[Encoded]] = {}
        memberships: dict[MemberKey, list[Encoded]] = {}
        enc_lot, enc_ent, enc_mem = LOT.encode, ENTITLEMENT.encode, MEMBERSHIP.encode
        for u in updates:
            s = u.state
            key = (u.program_id, u.member_id)
            balances.append(BALANCE.encode(balance_row(s)))
            tiers.append(TIER.encode(tier_row(s)))
            dues.append((u.program_id, u.member_id, opt_micros(u.due_at)))
            lots[key] = [enc_lot(lot_row(s, lot)) for lot in s.lots.values()]
            entitlements[key] = [enc_ent(entitlement_row(s, e)) for e in s.entitlements.values()]
            memberships[key] = [enc_mem(membership_row(s, m)) for m in s.memberships.values()]
        if not balances:
            return
        conn.executemany(self._sql_balance, balances)
        conn.executemany(self._sql_tier, tiers)
        conn.executemany(self._sql_due, dues)
        for children, rows in zip(self._children, (lots, entitlements, memberships), strict=True):
            if fresh:
                children.insert(conn, rows)
            else:
                children.sync(conn, rows)


class _Children:
    """The rows a member has several of (lots, entitlements, memberships): written by difference."""

    def __init__(self, codec: RowCodec[Any], prefix: str) -> None:
        self.codec = codec
        table = prefix + codec.table
        child_key = codec.key[2]
        self._select = f"{codec.select(table)} WHERE program_id = ? AND member_id IN "
        self._upsert = codec.insert(table, replace=True)
        self._insert = codec.insert(table)
        self._delete = f"DELETE FROM {table} WHERE program_id = ? AND member_id = ? AND {child_key} = ?"

    def insert(self, conn: sqlite3.Connection, by_member: dict[MemberKey, list[Encoded]]) -> None:
        rows = [row for member_rows in by_member.values() for row in member_rows]
        if rows:
            conn.executemany(self._insert, rows)

    def sync(self, conn: sqlite3.Connection, by_member: dict[MemberKey, list[Encoded]]) -> None:
        stored: dict[tuple[Any, ...], Encoded] = {}
        members_by_program: dict[str, list[str]] = {}
        for program_id, member_id in by_member:
            members_by_program.setdefault(program_id, []).append(member_id)
        key_of = self.codec.key_of
        for program_id, member_ids in members_by_program.items():
            for start in range(0, len(member_ids), _CHUNK):
                chunk = member_ids[start : start + _CHUNK]
                sql = self._select + "(" + ", ".join("?" * len(chunk)) + ")"
                for row in conn.execute(sql, (program_id, *chunk)):
                    stored[key_of(row)] = row
        changed: list[Encoded] = []
        for member_rows in by_member.values():
            for row in member_rows:
                if stored.pop(key_of(row), None) != row:
                    changed.append(row)
        if changed:
            conn.executemany(self._upsert, changed)
        if stored:
            conn.executemany(self._delete, list(stored))
