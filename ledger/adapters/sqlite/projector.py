"""Writing the read models: :class:`SqliteProjector` turns member updates into rows in the caller's transaction.

The write path calls :meth:`SqliteProjector.apply` from the event store's ``in_transaction`` hook, so the rows
commit (or roll back) with the events they come from. The projector never begins, commits or rolls back.

For each member of a batch ``apply``

- replaces its ``balance``, ``tier_state``, ``standing`` and ``due`` rows;
- brings its ``lot`` rows in line with the state: it reads the stored rows of the batch's members (one query
  per program, in chunks of members) and writes only the rows that are new or differ, and deletes rows the
  state no longer has, so a member with hundreds of closed lots costs a read, not a rewrite. A lot's source, amount, times and order are fixed when it is credited,
  so lots are compared on remaining points, held points and status only;
- inserts (or replaces: applying the same update twice is harmless) the history rows;
- points its new identities at itself (an identity absorbed by a merge moves to the surviving member);

and finally moves the checkpoint forward to the highest event position among the history rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from ledger.adapters.sqlite.read_schema import create_tables
from ledger.domain.queries import lot_status
from projections.codec import (
    BALANCE,
    HISTORY,
    LOT,
    STANDING,
    TIER,
    opt_micros,
)
from projections.rows import (
    HistoryRow,
    balance_row,
    lot_row,
    tier_row,
)
from projections.standing import standing_row
from projections.update import DEFAULT_CHECKPOINT, Encoded, MemberKey, MemberUpdate, encode_history, erases

_CHUNK: Final = 400  # member ids per IN (...) list


class SqliteProjector:
    """Writes the read-model tables named ``prefix + table`` on connections the caller owns."""

    def __init__(self, *, prefix: str = "", checkpoint_name: str = DEFAULT_CHECKPOINT) -> None:
        self.prefix = prefix
        self.checkpoint_name = checkpoint_name
        p = prefix
        self._sql_balance = BALANCE.insert(p + BALANCE.table, replace=True)
        self._sql_tier = TIER.insert(p + TIER.table, replace=True)
        self._sql_standing = STANDING.insert(p + STANDING.table, replace=True)
        self._sql_history = HISTORY.insert(p + HISTORY.table, replace=True)
        self._sql_history_fresh = HISTORY.insert(p + HISTORY.table)
        self._sql_due = f"INSERT OR REPLACE INTO {p}due (program_id, member_id, due_at) VALUES (?, ?, ?)"
        self._sql_forget_identities = f"DELETE FROM {prefix}identity WHERE program_id = ? AND member_id = ?"
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
        self._sql_lot_insert = LOT.insert(p + LOT.table)
        self._sql_lot_upsert = LOT.insert(p + LOT.table, replace=True)
        self._sql_lot_state = (
            f"SELECT program_id, member_id, lot_id, remaining, held, status FROM {p}lot "
            "WHERE program_id = ? AND member_id IN "
        )
        self._sql_lot_delete = f"DELETE FROM {p}lot WHERE program_id = ? AND member_id = ? AND lot_id = ?"

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
        erased = [(u.program_id, u.member_id) for u in updates if erases(u)]
        if erased:
            conn.executemany(self._sql_forget_identities, erased)
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
        encoded = [encode_history(row) for row in rows]
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
        members = list(updates)
        if not members:
            return
        conn.executemany(self._sql_balance, [BALANCE.encode(balance_row(u.state)) for u in members])
        conn.executemany(self._sql_tier, [TIER.encode(tier_row(u.state)) for u in members])
        conn.executemany(self._sql_standing, [tuple(standing_row(u.state)) for u in members])
        conn.executemany(self._sql_due, [(u.program_id, u.member_id, opt_micros(u.due_at)) for u in members])
        if fresh:
            lots = [LOT.encode(lot_row(u.state, lot)) for u in members for lot in u.state.lots.values()]
            if lots:
                conn.executemany(self._sql_lot_insert, lots)
        else:
            self._sync_lots(conn, members)

    def _sync_lots(self, conn: sqlite3.Connection, members: list[MemberUpdate]) -> None:
        """Write the lots that are new or whose remaining points, held points or status changed.

        The other columns of a lot (source, amount, times, order) are fixed when it is credited.
        """
        stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for program_id, chunk in _member_chunks(members):
            sql = self._sql_lot_state + "(" + ", ".join("?" * len(chunk)) + ")"
            for row in conn.execute(sql, (program_id, *chunk)):
                stored[row[:3]] = row[3:]
        changed: list[Encoded] = []
        encode = LOT.encode
        for u in members:
            state = u.state
            program_id, member_id = u.program_id, u.member_id
            for lot in state.lots.values():
                now = (lot.remaining, lot.held, lot_status(lot))
                if stored.pop((program_id, member_id, lot.lot_id), None) != now:
                    changed.append(encode(lot_row(state, lot)))
        if changed:
            conn.executemany(self._sql_lot_upsert, changed)
        if stored:
            conn.executemany(self._sql_lot_delete, list(stored))


def _member_chunks(members: Iterable[MemberUpdate] | Iterable[MemberKey]) -> Iterator[tuple[str, list[str]]]:
    """``(program_id, member_ids)`` in chunks small enough for one ``IN (...)`` list."""
    by_program: dict[str, list[str]] = {}
    for m in members:
        program_id, member_id = (m.program_id, m.member_id) if isinstance(m, MemberUpdate) else m
        by_program.setdefault(program_id, []).append(member_id)
    for program_id, member_ids in by_program.items():
        for start in range(0, len(member_ids), _CHUNK):
            yield program_id, member_ids[start : start + _CHUNK]
