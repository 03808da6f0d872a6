"""Rebuilding the SQLite read models: fold the whole log into fresh tables, then switch over in one transaction.

With ``reopen`` (the embedded store, whose log is in ``conn``'s file) the fold runs in ``workers`` processes
(:mod:`projections.parallel`): each reads its part of the ``events`` table (a SQL function of the stream id
picks it) and writes its rows on a connection of its own, waiting for SQLite's write lock in turn; the
switch-over is then as without workers, on ``conn``. Without it the fold runs in this process.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any

from ledger.adapters.sqlite.codec import EVENT_COLUMNS, event_from_row
from ledger.adapters.sqlite.projector import SqliteProjector
from ledger.adapters.sqlite.read_schema import create_tables, drop_tables, swap_tables
from ledger.domain.streams import MEMBER_PREFIX
from ledger.eventlog.port import EventStore, StoredEvent
from projections.parallel import DEFAULT_CACHE_MEMBERS, ParallelFold, Plan, parallel_report, partition_of
from projections.rebuild import (
    DEFAULT_FLUSH_ROWS,
    DEFAULT_PAGE_SIZE,
    MEMBERS_PER_TRANSACTION,
    DueAt,
    Fold,
    RebuildReport,
    RebuildRun,
)
from projections.tables import REBUILD_PREFIX
from projections.update import DEFAULT_CHECKPOINT


def _in_transaction(conn: sqlite3.Connection, work: Callable[[], None]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def rebuild(
    store: EventStore[Any],
    conn: sqlite3.Connection,
    fold: Fold,
    due_at: DueAt,
    *,
    stream_prefix: str = MEMBER_PREFIX,
    page_size: int = DEFAULT_PAGE_SIZE,
    flush_rows: int = DEFAULT_FLUSH_ROWS,
    prefix: str = "",
    checkpoint_name: str = DEFAULT_CHECKPOINT,
    workers: int = 1,
    reopen: Callable[[], EventStore[Any]] | None = None,
    cache_members: int = DEFAULT_CACHE_MEMBERS,
) -> RebuildReport:
    """Rebuild the ``prefix`` read-model tables on ``conn`` from every event of ``store`` (see the module doc).

    ``reopen`` opens the log again in a worker process after the fork (for reading evicted members' streams).
    """
    if conn.in_transaction:
        raise RuntimeError("rebuild needs a connection with no transaction open")
    if page_size < 1 or flush_rows < 1 or workers < 1 or cache_members < 1:
        raise ValueError("page_size, flush_rows, workers and cache_members must be positive")
    if reopen is not None:
        plan = Plan(workers, 0, stream_prefix, page_size, flush_rows, max(1, cache_members // workers), fold,
                    due_at, partial(_Side, _path_of(conn), reopen), SqliteProjector(prefix=REBUILD_PREFIX + prefix),
                    partial(_forget_identities, REBUILD_PREFIX + prefix))  # fmt: skip
        return _rebuild_parallel(store, conn, plan, prefix=prefix, checkpoint_name=checkpoint_name)
    started = time.perf_counter()
    fresh_prefix = REBUILD_PREFIX + prefix
    writer = SqliteProjector(prefix=fresh_prefix, checkpoint_name=checkpoint_name)
    run = RebuildRun(
        store, conn, fold, due_at, stream_prefix=stream_prefix, page_size=page_size, writer=writer
    )

    def prepare() -> None:
        drop_tables(conn, fresh_prefix)
        create_tables(conn, fresh_prefix, indexes=False)

    caught_up = 0

    def switch() -> None:
        nonlocal caught_up
        before = run.events + run.other_events
        touched: set[str] = set()
        while (streams := run.read_page()) is not None:
            touched |= streams
        caught_up = run.events + run.other_events - before
        run.write_history()
        run.write_members(sorted(touched), fresh=False)
        writer.set_checkpoint(conn, run.position)
        swap_tables(conn, fresh_prefix, prefix)

    _in_transaction(conn, prepare)
    try:
        while run.read_page() is not None:
            if len(run.history) >= flush_rows:
                _in_transaction(conn, run.write_history)
        _in_transaction(conn, run.write_history)
        members = sorted(run.states)
        for start in range(0, len(members), MEMBERS_PER_TRANSACTION):
            chunk = members[start : start + MEMBERS_PER_TRANSACTION]
            _in_transaction(conn, partial(run.write_members, chunk, fresh=True))
        _in_transaction(conn, switch)
    except BaseException:
        with suppress(sqlite3.Error):  # the live tables are untouched; the fresh ones are only clutter
            _in_transaction(conn, partial(drop_tables, conn, fresh_prefix))
        raise
    seconds = time.perf_counter() - started
    return RebuildReport(
        events=run.events,
        other_events=run.other_events,
        members=len(run.states),
        history_rows=run.history_rows,
        position=run.position,
        caught_up=caught_up,
        seconds=seconds,
        read_seconds=run.read_seconds,
        fold_seconds=run.fold_seconds,
        write_seconds=seconds - run.read_seconds - run.fold_seconds,
    )


def _path_of(conn: sqlite3.Connection) -> str:
    return str(conn.execute("PRAGMA database_list").fetchone()[2])


def _forget_identities(prefix: str, conn: sqlite3.Connection, members: Sequence[tuple[str, str]]) -> None:
    conn.executemany(f"DELETE FROM {prefix}identity WHERE program_id = ? AND member_id = ?", members)


class _Side:
    """A worker's own connection to the store's file, and the log opened again (see ``projections.parallel``)."""

    def __init__(self, path: str, reopen: Callable[[], EventStore[Any]], index: int, workers: int) -> None:
        self.store = reopen()
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=600)
        self.conn.create_function("rebuild_part", 2, partition_of, deterministic=True)
        self._part = (workers, index)
        self._sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? AND position <= ? "
            "AND rebuild_part(stream_id, ?) = ? ORDER BY position LIMIT ?"
        )

    def read_part(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        rows = self.conn.execute(self._sql, (after, upto, *self._part, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def transaction(self, work: Callable[[Any], None]) -> None:
        _in_transaction(self.conn, partial(work, self.conn))

    def close(self) -> None:
        self.conn.close()
        self.store.close()


def _rebuild_parallel(
    store: EventStore[Any], conn: sqlite3.Connection, plan: Plan, *, prefix: str, checkpoint_name: str
) -> RebuildReport:
    """The rebuild with the fold in worker processes (see the module doc)."""
    started = time.perf_counter()
    fresh_prefix = REBUILD_PREFIX + prefix
    writer = SqliteProjector(prefix=fresh_prefix, checkpoint_name=checkpoint_name)

    def prepare() -> None:
        drop_tables(conn, fresh_prefix)
        create_tables(conn, fresh_prefix, indexes=False)

    _in_transaction(conn, prepare)
    upto = int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])
    before = catch = None
    try:
        workers = ParallelFold(replace(plan, upto=upto))
        try:
            parts = workers.wait_parts()

            write_before = workers.follow(store)  # most of what came meanwhile, before the lock

            def follow() -> None:
                nonlocal before
                before = write_before(conn, writer)

            _in_transaction(conn, follow)

            def switch() -> None:
                nonlocal catch
                catch = workers.follow(store)(conn, writer)
                writer.set_checkpoint(conn, catch.position)
                swap_tables(conn, fresh_prefix, prefix)

            _in_transaction(conn, switch)
        finally:
            workers.stop()
    except BaseException:
        with suppress(sqlite3.Error):  # the live tables are untouched; the fresh ones are only clutter
            _in_transaction(conn, partial(drop_tables, conn, fresh_prefix))
        raise
    assert before is not None and catch is not None
    return parallel_report(parts, before, catch, time.perf_counter() - started)
