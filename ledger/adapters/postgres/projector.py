"""Writing the read models on PostgreSQL: :class:`PgProjector`, the twin of
:class:`~ledger.adapters.sqlite.projector.SqliteProjector` (same methods, same semantics, same rows).

``apply`` runs inside the caller's transaction (the event store's append) and never begins, commits or rolls
back. For each member of a batch it replaces the ``balance``, ``tier_state``, ``standing`` and ``due`` rows, brings the
``lot`` rows in line with the state (reading the stored rows of the batch's
members, writing only the rows that are new or differ, deleting the ones the state no longer has), upserts the
history rows (applying the same update twice is harmless), points new identities at the member, and moves
the checkpoint forward with ``GREATEST`` (never back).

Round trips: the whole ``apply`` is two pipelined exchanges, whatever the number of members: the first sends
the four member-row upserts and the reads of stored lot rows (``member_id = ANY(%s)``, one per
program), the second every remaining write. Only row locks are taken (``INSERT ... ON CONFLICT``,
``DELETE`` by key); rows are written in key order so two transactions touching the same members lock them in
the same order. The one row every writer updates is the checkpoint's, so concurrent appends serialise on it
from their ``apply`` to their commit (keep the work after ``apply`` short).

Result rows are read with a tuple row factory, whatever the connection's default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow, tuple_row

from ledger.adapters.postgres.read_schema import create_tables
from ledger.domain.queries import lot_status
from projections.codec import (
    BALANCE,
    DUE,
    HISTORY,
    IDENTITY,
    LOT,
    STANDING,
    TIER,
    RowCodec,
    opt_micros,
)
from projections.rows import (
    HistoryRow,
    balance_row,
    lot_row,
    tier_row,
)
from projections.standing import standing_row
from projections.update import DEFAULT_CHECKPOINT, MemberUpdate, encode_history, erases

__all__ = ["DEFAULT_CHECKPOINT", "MemberUpdate", "PgProjector"]

Encoded = tuple[Any, ...]
MemberKey = tuple[str, str]
Conn = psycopg.Connection[Any]

_SCHEMA_LOCK: Final = 0x6C6564676572  # advisory lock key serialising create_schema across replicas


def _by_program(keys: Iterable[MemberKey]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for program_id, member_id in keys:
        out.setdefault(program_id, []).append(member_id)
    return out


def _copy(conn: Conn, codec: RowCodec[Any], table: str, rows: Sequence[Encoded]) -> None:
    """Bulk-load encoded rows with ``COPY`` (for tables that hold none of them yet)."""
    if not rows:
        return
    statement = f"COPY {table} ({', '.join(codec.columns)}) FROM STDIN"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


class _Children:
    """Rows a member has several of (its lots): the stored ones are read, changed ones
    written, missing ones deleted. ``compare`` names the columns that can change (lots: remaining, held,
    status; their other columns are fixed when credited); None: the whole row is compared."""

    def __init__(self, codec: RowCodec[Any], prefix: str, compare: Sequence[str] | None = None) -> None:
        self.codec = codec
        self.table = prefix + codec.table
        self.width = len(codec.key)
        self.whole = compare is None
        columns = codec.columns if compare is None else (*codec.key, *compare)
        self.select = (
            f"SELECT {', '.join(columns)} FROM {self.table} WHERE program_id = %s AND member_id = ANY(%s)"
        )
        self.upsert = codec.upsert(self.table)
        self.delete = (
            f"DELETE FROM {self.table} WHERE program_id = %s AND member_id = %s AND {codec.key[2]} = %s"
        )

    def stored_of(self, rows: Iterable[TupleRow]) -> dict[Encoded, Encoded]:
        """``{key: compared part}`` of the stored rows."""
        w = self.width
        if self.whole:
            return {tuple(r[:w]): tuple(r) for r in rows}
        return {tuple(r[:w]): tuple(r[w:]) for r in rows}

    def writes(
        self, changed: list[Encoded], stored: dict[Encoded, Encoded]
    ) -> list[tuple[str, list[Encoded]]]:
        """The statements for ``changed`` rows (upserted) and the ``stored`` keys left over (deleted), in key
        order."""
        w = self.width
        out: list[tuple[str, list[Encoded]]] = []
        if changed:
            changed.sort(key=lambda r: r[:w])
            out.append((self.upsert, changed))
        if stored:
            out.append((self.delete, sorted(stored)))
        return out


class PgProjector:
    """Writes the read-model tables named ``prefix + table`` on psycopg connections the caller owns."""

    def __init__(self, *, prefix: str = "", checkpoint_name: str = DEFAULT_CHECKPOINT) -> None:
        self.prefix = prefix
        self.checkpoint_name = checkpoint_name
        p = prefix
        self._sql_balance = BALANCE.upsert(p + BALANCE.table)
        self._sql_tier = TIER.upsert(p + TIER.table)
        self._sql_standing = STANDING.upsert(p + STANDING.table)
        self._sql_due = DUE.upsert(p + DUE.table)
        self._sql_history = HISTORY.upsert(p + HISTORY.table)
        self._sql_identity = IDENTITY.upsert(p + IDENTITY.table)
        self._sql_forget_identities = f"DELETE FROM {p}identity WHERE program_id = %s AND member_id = %s"
        table = p + "projection_checkpoint"
        self._sql_checkpoint = (
            f"INSERT INTO {table} (name, position) VALUES (%s, %s) "
            f"ON CONFLICT (name) DO UPDATE SET position = GREATEST({table}.position, excluded.position)"
        )
        self._sql_set_checkpoint = (
            f"INSERT INTO {table} (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
        )
        self._lots = _Children(LOT, p, ("remaining", "held", "status"))

    # -- schema -----------------------------------------------------------------------------------------------

    def create_schema(self, conn: Conn, *, indexes: bool = True) -> None:
        """Create the tables (and indexes) that do not exist yet, on ``conn`` as it is (no commit).

        Takes a transaction-scoped advisory lock first so replicas starting together do not race on the catalog
        (``CREATE TABLE IF NOT EXISTS`` alone is not safe against that); on an autocommit connection with no
        transaction open it runs in a transaction of its own.
        """
        if conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                create_tables(conn, self.prefix, indexes=indexes)
            return
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        create_tables(conn, self.prefix, indexes=indexes)

    # -- writes -----------------------------------------------------------------------------------------------

    def apply(self, conn: Conn, updates: Sequence[MemberUpdate]) -> None:
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
        history.sort(key=lambda r: r[:3])
        identities = sorted(
            {(u.program_id, i): u.member_id for u in updates for i in u.identities_added}.items()
        )
        with conn.pipeline():
            later = self._write_members(conn, [latest[k] for k in sorted(latest)], fresh=False)
            if history:
                later.append((self._sql_history, history))
            erased = sorted({(u.program_id, u.member_id) for u in updates if erases(u)})
            if erased:
                later.append((self._sql_forget_identities, erased))
            if identities:
                later.append((self._sql_identity, [(p, i, m) for (p, i), m in identities]))
            if position:
                later.append((self._sql_checkpoint, [(self.checkpoint_name, position)]))
            with conn.cursor() as cur:
                for statement, params in later:
                    cur.executemany(statement, params)

    def write_members(self, conn: Conn, updates: Iterable[MemberUpdate], *, fresh: bool) -> None:
        """Write the current rows of ``updates`` (not their history or identities).

        ``fresh=True`` is for tables that hold nothing of these members yet (a rebuild): ``COPY``, no reads.
        Otherwise the rows are synchronised as :meth:`apply` does.
        """
        members = sorted(updates, key=lambda u: (u.program_id, u.member_id))
        if not members:
            return
        if fresh:
            p = self.prefix
            _copy(conn, BALANCE, p + BALANCE.table, [BALANCE.encode(balance_row(u.state)) for u in members])
            _copy(conn, TIER, p + TIER.table, [TIER.encode(tier_row(u.state)) for u in members])
            _copy(conn, STANDING, p + STANDING.table, [tuple(standing_row(u.state)) for u in members])
            _copy(
                conn, DUE, p + DUE.table, [(u.program_id, u.member_id, opt_micros(u.due_at)) for u in members]
            )
            for children, rows in self._child_rows(members).items():
                _copy(conn, children.codec, children.table, [r for rs in rows.values() for r in rs])
            return
        with conn.pipeline():
            later = self._write_members(conn, members, fresh=False)
            with conn.cursor() as cur:
                for statement, params in later:
                    cur.executemany(statement, params)

    def write_history(self, conn: Conn, rows: Iterable[HistoryRow], *, fresh: bool = False) -> int:
        """Insert history rows (``fresh``: ``COPY`` into a table without them); return how many."""
        encoded = [encode_history(row) for row in rows]
        if not encoded:
            return 0
        if fresh:
            _copy(conn, HISTORY, self.prefix + HISTORY.table, encoded)
        else:
            encoded.sort(key=lambda r: r[:3])
            with conn.cursor() as cur:
                cur.executemany(self._sql_history, encoded)
        return len(encoded)

    def write_identities(self, conn: Conn, rows: Iterable[tuple[str, str, str]]) -> None:
        """Point identities at members: ``(program_id, identity, member_id)`` each (the last one wins)."""
        latest = {(p, i): m for p, i, m in rows}
        if latest:
            with conn.cursor() as cur:
                cur.executemany(self._sql_identity, [(p, i, m) for (p, i), m in sorted(latest.items())])

    def set_checkpoint(self, conn: Conn, position: int) -> None:
        """Set the checkpoint to ``position`` (it may move backwards: this is for rebuilds)."""
        conn.execute(self._sql_set_checkpoint, (self.checkpoint_name, position))

    # -- internals --------------------------------------------------------------------------------------------

    def _child_rows(self, members: Sequence[MemberUpdate]) -> dict[_Children, dict[MemberKey, list[Encoded]]]:
        """The encoded child rows of each member, by table."""
        lots = {
            (u.program_id, u.member_id): [LOT.encode(lot_row(u.state, lot)) for lot in u.state.lots.values()]
            for u in members
        }
        return {self._lots: lots}

    def _write_members(
        self, conn: Conn, members: Sequence[MemberUpdate], *, fresh: bool
    ) -> list[tuple[str, list[Encoded]]]:
        """In pipeline mode: send the member-row upserts and the child reads, then work out the child writes;
        returns the writes still to send as ``(statement, rows)``."""
        if fresh or not members:
            raise ValueError("_write_members syncs a non-empty batch")
        by_program = _by_program((u.program_id, u.member_id) for u in members)
        with conn.cursor() as cur:
            cur.executemany(self._sql_balance, [BALANCE.encode(balance_row(u.state)) for u in members])
            cur.executemany(self._sql_tier, [TIER.encode(tier_row(u.state)) for u in members])
            cur.executemany(self._sql_standing, [tuple(standing_row(u.state)) for u in members])
            cur.executemany(
                self._sql_due,
                [(u.program_id, u.member_id, opt_micros(u.due_at)) for u in members],
            )
        children = (self._lots,)
        reads: list[tuple[_Children, psycopg.Cursor[TupleRow]]] = []
        for child in children:
            for program_id, member_ids in by_program.items():
                cur = conn.cursor(row_factory=tuple_row)
                cur.execute(child.select, (program_id, member_ids))
                reads.append((child, cur))
        stored: dict[_Children, dict[Encoded, Encoded]] = {child: {} for child in children}
        for child, cur in reads:  # the first fetch syncs the pipeline: one round trip for all of the above
            stored[child].update(child.stored_of(cur.fetchall()))
            cur.close()

        lots = stored[self._lots]
        changed_lots: list[Encoded] = []
        for u in members:
            state = u.state
            for lot in state.lots.values():
                if lots.pop((u.program_id, u.member_id, lot.lot_id), None) != (
                    lot.remaining,
                    lot.held,
                    lot_status(lot),
                ):
                    changed_lots.append(LOT.encode(lot_row(state, lot)))
        return self._lots.writes(changed_lots, lots)
