"""Feeding the read models from the global feed: :class:`ProjectionRunner`.

The write path normally projects in the append's transaction (SQLite, PostgreSQL). The runner is for everything
else: catching read models up with a log they lag (events appended by a process that died before projecting,
read models restored from an older backup, a KurrentDB log, which cannot share a transaction with them), and
projecting appends that committed without a hook (:meth:`ProjectionRunner.project_committed`).

A *page* is ``store.read_all(after_position=checkpoint, limit=page_size)``. For each page the runner, in ONE
read-model transaction,

1. locks the read models against other projectors (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``LOCK TABLE
   balance IN EXCLUSIVE MODE``, the table every projector writes first, as the rebuild's switch-over does),
   then reads the checkpoint and the page (so both are read after every concurrent projection committed);
2. folds every member stream the page touches up to the page's last position: from the state it cached
   after the previous page when that continues the stream, otherwise from the stream itself
   (``read_stream``; events up to the page are folded without writing their history rows);
3. writes the history rows of the page's member events and the touched members' current rows (balance,
   tier, standing, due, lots, identities) through the projector's ``apply``, and sets the
   checkpoint to the page's last position (events of other streams, e.g. program streams, are skipped but
   passed by the checkpoint).

Exactly once: a crash before the commit leaves the checkpoint where it was and the page is read again; every
row is an idempotent upsert of state-derived values, so doing a page twice is harmless. A member whose
stored ``balance.version`` is already *newer* than the folded state (a later append was projected by someone
else) keeps its current rows; only its history rows are written, so the runner never moves a member back.

The checkpoint only moves forward contiguously through the runner; the runner cannot see a hole *below*
the checkpoint (in-transaction projection never leaves one).

Connections: ``connection`` is a context-manager factory for a connection to the read-model database with no
transaction open - a ``sqlite3.Connection`` or a psycopg connection in autocommit mode, e.g.
``Backend.read_connection``. For SQLite (whose read connections are query-only) the runner opens its own
writable connection to the same file, one per thread, closed by :meth:`ProjectionRunner.close`.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

from ledger.domain import events as ev
from ledger.domain.evolve import evolve
from ledger.domain.state import Balances, MemberState
from ledger.domain.streams import MEMBER_PREFIX, parse_member_stream
from ledger.eventlog.port import EventStore, StoredEvent
from projections.rebuild import DueAt, Fold
from projections.rows import HistoryRow, history_row, member_identities
from projections.update import MemberUpdate, Projector

__all__ = ["DEFAULT_PAGE_SIZE", "ProjectionRunner", "member_fold"]

DEFAULT_PAGE_SIZE: Final = 1_000
_MAX_CACHED: Final = 50_000  # member states kept between pages (dropped all at once beyond this)


TierOf = Callable[[MemberState, datetime], str | None]
"""The tier in effect after an event: ``tier_of(state_after, business_time)``."""
ZoneOf = Callable[[str], tzinfo]
"""The time zone a program's summaries are written in: ``zone_of(program_id)``."""


def member_fold(
    state: MemberState | None,
    events: Sequence[StoredEvent],
    *,
    tier_of: TierOf | None = None,
    zone_of: ZoneOf | None = None,
) -> tuple[MemberState, list[HistoryRow]]:
    """The domain fold of a member stream (a :data:`~projections.rebuild.Fold`): evolve ``state`` (None: the
    start of the stream) with ``events`` and return it with their history rows (balances around each event, the
    tier after it when ``tier_of`` is given, summaries in ``zone_of``'s zone, else UTC)."""
    if state is None:
        program_id, member_id = parse_member_stream(events[0].stream_id)
        state = MemberState(program_id=program_id, member_id=member_id)
    zone = zone_of(state.program_id) if zone_of is not None else UTC
    rows: list[HistoryRow] = []
    pid, mid = state.program_id, state.member_id  # the stream's, as history_row would parse them from its id
    decode = ev.decode
    before = Balances.of(state)
    for stored in events:
        event = decode(stored.payload)
        evolve(state, event)
        after = Balances.of(state)
        tier = tier_of(state, stored.occurred_at) if tier_of is not None else None
        row = history_row(
            stored, event, before, after, program_id=pid, member_id=mid, tz=zone, tier_after=tier
        )
        rows.append(row)
        before = after  # the balances after one event are those before the next
    return state, rows


class ProjectionRunner:
    """Brings the read models behind ``projector`` up to date with ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: EventStore[Any],
        projector: Projector,
        connection: Callable[[], AbstractContextManager[Any]],
        due_at: DueAt,
        *,
        fold: Fold = member_fold,
        stream_prefix: str = MEMBER_PREFIX,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self._store = store
        self._projector = projector
        self._connection = connection
        self._due_at = due_at
        self._fold = fold
        self._prefix = stream_prefix
        self._page_size = page_size
        self._states: dict[str, MemberState] = {}
        self._lock = threading.Lock()  # one page (or projection) at a time per runner; guards the cache
        self._writers: dict[int, sqlite3.Connection] = {}
        self._writers_lock = threading.Lock()
        weakref.finalize(self, _close_all, self._writers)
        p = projector.prefix
        self._table_checkpoint = f"{p}projection_checkpoint"
        self._table_balance = f"{p}balance"

    # -- public ---------------------------------------------------------------------------------------------

    def position(self) -> int:
        """The read models' checkpoint (0 when they have none)."""
        with self._connection() as conn:
            return self._checkpoint(conn, lock=False)

    def lagging(self) -> bool:
        """Whether the log holds an event after the checkpoint (read without taking any lock)."""
        return bool(self._store.read_all(after_position=self.position(), limit=1))

    def run_once(self) -> int:
        """Project the next page; return how many events it held (0: the read models were up to date)."""
        with self._lock, self._transaction() as conn:
            checkpoint = self._checkpoint(conn, lock=True)
            page = self._store.read_all(after_position=checkpoint, limit=self._page_size)
            if page:
                self._write_page(conn, checkpoint, page)
            return len(page)

    def catch_up(self) -> int:
        """Project pages until the log is exhausted; return how many events were read.

        Checks for lag first without taking the read models' write lock, so an up-to-date start costs two
        reads.
        """
        if not self.lagging():
            return 0
        total = 0
        while n := self.run_once():
            total += n
        return total

    def project_committed(self, stored: Sequence[StoredEvent], updates: Sequence[MemberUpdate]) -> None:
        """Project events that were appended (committed) without an in-transaction hook, in a read-model
        transaction of their own, and move the checkpoint past them.

        ``updates`` are the write path's member updates for ``stored`` (states after, history rows). When the
        first event after the checkpoint is the first of ``stored`` (nothing unprojected before them), they
        are written as they are, in one transaction. Otherwise (an earlier projection failed, a process died
        before projecting, program events, another replica's append in flight) :meth:`catch_up` folds from
        the checkpoint instead, which covers ``stored`` too since they are committed. Either way the
        checkpoint never jumps over an unprojected event.
        """
        if not stored:
            return
        first = min(s.position for s in stored)
        last = max(s.position for s in stored)
        with self._lock, self._transaction() as conn:
            checkpoint = self._checkpoint(conn, lock=True)
            if checkpoint >= last:
                return  # a catch-up got there first
            nxt = self._store.read_all(after_position=checkpoint, limit=1)
            if nxt and nxt[0].position == first and checkpoint < first:
                self._write(conn, updates, last)  # cached states of these members continue from the log later
                return
        self.catch_up()

    def close(self) -> None:
        """Close the writable SQLite connections the runner opened."""
        with self._writers_lock:
            _close_all(self._writers)

    # -- one page -------------------------------------------------------------------------------------------

    def _write_page(self, conn: Any, checkpoint: int, page: list[StoredEvent]) -> None:
        last = page[-1].position
        by_stream: dict[str, list[StoredEvent]] = {}
        for stored in page:
            if stored.stream_id.startswith(self._prefix):
                by_stream.setdefault(stored.stream_id, []).append(stored)
        updates: list[MemberUpdate] = []
        try:
            for stream_id, events in by_stream.items():
                state, rows = self._advance(stream_id, events, checkpoint)
                updates.append(
                    MemberUpdate(
                        state.program_id,
                        state.member_id,
                        state,
                        rows,
                        self._due_at(state),
                        member_identities(state),
                    )
                )
            self._write(conn, updates, last)
        except BaseException:
            self._states.clear()  # states may be ahead of what commits: fold again from the log
            raise
        if len(self._states) > _MAX_CACHED:
            self._states.clear()

    def _advance(
        self, stream_id: str, events: list[StoredEvent], checkpoint: int
    ) -> tuple[MemberState, list[HistoryRow]]:
        """The stream's state after ``events`` (its events in the page) and their history rows."""
        first = events[0].version
        state = self._states.pop(stream_id, None)
        if state is not None and state.version >= first:
            state = None  # the cache is ahead of the page (cannot go back): fold from the start
        known = 0 if state is None else state.version
        if first > known + 1:  # events before the page that the state has not seen: fold them, no rows
            earlier = self._store.read_stream(stream_id, after_version=known, limit=first - 1 - known)
            if [e.version for e in earlier] != list(range(known + 1, first)):
                raise RuntimeError(f"stream {stream_id!r} does not read back versions {known + 1}..{first - 1}")
            state, _ = self._fold(state, earlier)
        state, rows = self._fold(state, events)
        self._states[stream_id] = state
        return state, [r for r in rows if r.position > checkpoint]

    def _write(self, conn: Any, updates: Sequence[MemberUpdate], position: int) -> None:
        """Write ``updates`` (never moving a member's rows back) and set the checkpoint to ``position``."""
        stored = self._stored_versions(conn, [(u.program_id, u.member_id) for u in updates])
        current = [u for u in updates if stored.get((u.program_id, u.member_id), -1) <= u.state.version]
        behind = [u for u in updates if stored.get((u.program_id, u.member_id), -1) > u.state.version]
        self._projector.apply(conn, current)
        rows = [row for u in behind for row in u.history]
        if rows:
            self._projector.write_history(conn, rows)
        self._projector.set_checkpoint(conn, position)  # callers hold the lock and pass a later position

    # -- SQL ------------------------------------------------------------------------------------------------

    def _checkpoint(self, conn: Any, *, lock: bool) -> int:
        mark = "?" if isinstance(conn, sqlite3.Connection) else "%s"
        sql = f"SELECT position FROM {self._table_checkpoint} WHERE name = {mark}"
        if lock and not isinstance(conn, sqlite3.Connection):
            # every projector writes balance first: holding this, no projection is half done or starts
            conn.execute(f"LOCK TABLE {self._table_balance} IN EXCLUSIVE MODE")
        row = self._query(conn, sql, (self._projector.checkpoint_name,))
        return 0 if not row else int(row[0][0])

    def _stored_versions(self, conn: Any, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        by_program: dict[str, list[str]] = {}
        for program_id, member_id in keys:
            by_program.setdefault(program_id, []).append(member_id)
        sqlite = isinstance(conn, sqlite3.Connection)
        for program_id, member_ids in by_program.items():
            for start in range(0, len(member_ids), 400):
                chunk = member_ids[start : start + 400]
                if sqlite:
                    sql = (
                        f"SELECT member_id, version FROM {self._table_balance} WHERE program_id = ? "
                        f"AND member_id IN ({', '.join('?' * len(chunk))})"
                    )
                    rows = self._query(conn, sql, (program_id, *chunk))
                else:
                    sql = (
                        f"SELECT member_id, version FROM {self._table_balance} "
                        "WHERE program_id = %s AND member_id = ANY(%s)"
                    )
                    rows = self._query(conn, sql, (program_id, chunk))
                for member_id, version in rows:
                    found[(program_id, member_id)] = int(version)
        return found

    @staticmethod
    def _query(conn: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if isinstance(conn, sqlite3.Connection):
            return conn.execute(sql, params).fetchall()
        from psycopg.rows import tuple_row  # PostgreSQL is an optional dependency

        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._connection() as lent:
            if isinstance(lent, sqlite3.Connection):
                conn = self._sqlite_writer(lent)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            else:
                with lent.transaction():
                    yield lent

    def _sqlite_writer(self, reader: sqlite3.Connection) -> sqlite3.Connection:
        """This thread's writable connection to the file ``reader`` is open on."""
        key = threading.get_ident()
        with self._writers_lock:
            conn = self._writers.get(key)
            if conn is None:
                path = next(row[2] for row in reader.execute("PRAGMA database_list") if row[1] == "main")
                if not path:
                    raise RuntimeError("the read-model connection is not to a file")
                conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
                self._writers[key] = conn
            return conn


def _close_all(writers: dict[int, sqlite3.Connection]) -> None:
    for conn in writers.values():
        conn.close()
    writers.clear()
