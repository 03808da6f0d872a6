"""Rebuilding every read model on PostgreSQL from the event log: the twin of :mod:`projections.rebuild`.

:func:`rebuild` has the same signature and report as :func:`projections.rebuild.rebuild` but writes with a
:class:`~ledger.adapters.postgres.projector.PgProjector` on a psycopg connection. It reads the whole log with
``read_all`` in large pages and hands each member stream's events, in order, to the caller's ``fold``,
keeping each member's state between pages. History rows are bulk-loaded (``COPY``) as it goes, in batches,
each batch its own transaction, into fresh ``rb_``-prefixed tables created without secondary indexes, while
the live tables keep serving; the members' current rows are loaded once the log is exhausted, then the
indexes are built (outside the switch, so the switch stays short).

The switch-over is one transaction on ``conn``. It first takes an ``EXCLUSIVE`` lock on the live ``balance``
table: readers go on, but every projector writes ``balance`` first in its ``apply``, so appends that have
started projecting finish (commit) before the lock is granted and later ones wait at their first projection
write. It then folds whatever was appended since the last page (everything committed so far, since it reads
after the lock), rewrites those members' rows, sets the checkpoint to the last position folded, drops the
live tables and renames the fresh ones with their constraints and indexes. Readers see the old tables until
the commit and the new ones after it; the appends that waited write their (state-based, idempotent) rows into
the new tables once it commits, since a statement waiting for a dropped table looks the name up again.

With ``reopen`` (a callable opening the log again, a :class:`PostgresEventStore`) the fold runs in ``workers``
processes (:mod:`projections.parallel`): each reads its part of ``events`` (picked in SQL by the MD5 of the
stream id) and loads its rows on connections of its own, in parallel; the indexes and the switch-over are then
as without workers, on ``conn``. Memory is then bounded (each worker keeps a bounded cache of member states).

``conn`` is a psycopg connection with no transaction open (autocommit or not: every step runs in
``conn.transaction()``). If anything fails before the switch-over commits, the live tables are untouched and
the fresh ones are dropped. Memory: the states of all members are kept until the end (not their events).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Any, Final

import psycopg

from ledger.adapters.postgres.projector import PgProjector
from ledger.adapters.postgres.read_schema import (
    REBUILD_PREFIX,
    create_indexes,
    create_tables,
    drop_tables,
    swap_tables,
    table_exists,
)
from ledger.adapters.postgres.store import EVENT_COLUMNS, PostgresEventStore
from ledger.adapters.postgres.store_reading import event_from_row
from ledger.domain.streams import MEMBER_PREFIX
from ledger.eventlog.port import EventStore, StoredEvent
from projections.parallel import DEFAULT_CACHE_MEMBERS, ParallelFold, Plan, parallel_report
from projections.rebuild import DEFAULT_FLUSH_ROWS, DEFAULT_PAGE_SIZE, DueAt, Fold, RebuildReport, RebuildRun
from projections.update import DEFAULT_CHECKPOINT

__all__ = ["DEFAULT_FLUSH_ROWS", "DEFAULT_PAGE_SIZE", "DueAt", "Fold", "RebuildReport", "rebuild"]

Conn = psycopg.Connection[Any]

_MEMBER_BATCH: Final = 2_000
_MEMBERS_PER_TRANSACTION: Final = 5_000


def _in_transaction(conn: Conn, work: Callable[[], None]) -> None:
    with conn.transaction():
        work()


def rebuild(
    store: EventStore[Any],
    conn: Conn,
    fold: Fold,
    due_at: DueAt,
    *,
    stream_prefix: str = MEMBER_PREFIX,
    page_size: int = DEFAULT_PAGE_SIZE,
    flush_rows: int = DEFAULT_FLUSH_ROWS,
    prefix: str = "",
    checkpoint_name: str = DEFAULT_CHECKPOINT,
    workers: int = 1,
    reopen: Callable[[], PostgresEventStore] | None = None,
    cache_members: int = DEFAULT_CACHE_MEMBERS,
) -> RebuildReport:
    """Rebuild the ``prefix`` read-model tables on ``conn`` from every event of ``store`` (see the module doc).

    ``reopen`` opens the log again in a worker process after the fork (its reads and writes go through it).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("rebuild needs a connection with no transaction open")
    if page_size < 1 or flush_rows < 1 or workers < 1 or cache_members < 1:
        raise ValueError("page_size, flush_rows, workers and cache_members must be positive")
    if reopen is not None:
        plan = Plan(workers, 0, stream_prefix, page_size, flush_rows, max(1, cache_members // workers), fold,
                    due_at, partial(_Side, reopen), PgProjector(prefix=REBUILD_PREFIX + prefix),
                    partial(_forget_identities, REBUILD_PREFIX + prefix))  # fmt: skip
        return _rebuild_parallel(store, conn, plan, prefix=prefix, checkpoint_name=checkpoint_name)
    started = time.perf_counter()
    fresh_prefix = REBUILD_PREFIX + prefix
    writer = PgProjector(prefix=fresh_prefix, checkpoint_name=checkpoint_name)
    run = RebuildRun(
        store, conn, fold, due_at, stream_prefix=stream_prefix, page_size=page_size, writer=writer
    )

    def prepare() -> None:
        drop_tables(conn, fresh_prefix)
        create_tables(conn, fresh_prefix, indexes=False)

    caught_up = 0

    def switch() -> None:
        nonlocal caught_up
        if table_exists(conn, prefix + "balance"):  # hold off projecting appends (see the module doc)
            conn.execute(f"LOCK TABLE {prefix}balance IN EXCLUSIVE MODE")
        before = run.events + run.other_events
        touched: set[str] = set()
        while (streams := run.read_page()) is not None:
            touched |= streams
        caught_up = run.events + run.other_events - before
        run.write_history(fresh=False)  # upserts: the unique index exists by now
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
        for start in range(0, len(members), _MEMBERS_PER_TRANSACTION):
            chunk = members[start : start + _MEMBERS_PER_TRANSACTION]
            _in_transaction(conn, partial(run.write_members, chunk, fresh=True))
        _in_transaction(conn, partial(create_indexes, conn, fresh_prefix))
        _in_transaction(conn, switch)
    except BaseException:
        with suppress(psycopg.Error):  # the live tables are untouched; the fresh ones are only clutter
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


def _forget_identities(prefix: str, conn: Conn, members: Sequence[tuple[str, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f"DELETE FROM {prefix}identity WHERE program_id = %s AND member_id = %s".encode(), members
        )


class _Side:
    """A worker's own pool on the log's database (see ``projections.parallel``)."""

    def __init__(self, reopen: Callable[[], PostgresEventStore], index: int, workers: int) -> None:
        self._pg = reopen()
        self.store: EventStore[Any] = self._pg
        self._part = (workers, index)
        self._sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s AND position <= %s "
            "AND ('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint %% %s = %s ORDER BY position LIMIT %s"
        ).encode()

    def read_part(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        with self._pg.connection() as conn:
            rows = conn.execute(self._sql, (after, upto, *self._part, limit)).fetchall()
        return [event_from_row(row) for row in rows]

    def transaction(self, work: Callable[[Any], None]) -> None:
        with self._pg.connection() as conn, conn.transaction():
            work(conn)

    def close(self) -> None:
        self._pg.close()


def _rebuild_parallel(
    store: EventStore[Any], conn: Conn, plan: Plan, *, prefix: str, checkpoint_name: str
) -> RebuildReport:
    """The rebuild with the fold in worker processes (see the module doc)."""
    started = time.perf_counter()
    fresh_prefix = REBUILD_PREFIX + prefix
    writer = PgProjector(prefix=fresh_prefix, checkpoint_name=checkpoint_name)

    def prepare() -> None:
        drop_tables(conn, fresh_prefix)
        create_tables(conn, fresh_prefix, indexes=False)

    _in_transaction(conn, prepare)
    row = conn.execute(b"SELECT coalesce(max(position), 0) FROM events").fetchone()
    upto = int(row[0]) if row else 0
    before = catch = None
    try:
        workers = ParallelFold(replace(plan, upto=upto))
        try:
            parts = workers.wait_parts()
            _in_transaction(conn, partial(create_indexes, conn, fresh_prefix))

            write_before = workers.follow(store)  # most of what came meanwhile, before the lock

            def follow() -> None:
                nonlocal before
                before = write_before(conn, writer)

            _in_transaction(conn, follow)

            def switch() -> None:
                nonlocal catch
                if table_exists(conn, prefix + "balance"):  # hold off projecting appends (see the module doc)
                    conn.execute(f"LOCK TABLE {prefix}balance IN EXCLUSIVE MODE".encode())
                catch = workers.follow(store)(conn, writer)
                writer.set_checkpoint(conn, catch.position)
                swap_tables(conn, fresh_prefix, prefix)

            _in_transaction(conn, switch)
        finally:
            workers.stop()
    except BaseException:
        with suppress(psycopg.Error):  # the live tables are untouched; the fresh ones are only clutter
            _in_transaction(conn, partial(drop_tables, conn, fresh_prefix))
        raise
    assert before is not None and catch is not None
    return parallel_report(parts, before, catch, time.perf_counter() - started)
