"""Rebuilding the SQLite read models: fold the whole log into fresh tables, then switch over in one transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import Any

from ledger.adapters.sqlite.projector import SqliteProjector
from ledger.adapters.sqlite.read_schema import create_tables, drop_tables, swap_tables
from ledger.domain.streams import MEMBER_PREFIX
from ledger.eventlog.port import EventStore
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
) -> RebuildReport:
    """Rebuild the ``prefix`` read-model tables on ``conn`` from every event of ``store`` (see the module doc)."""
    if conn.in_transaction:
        raise RuntimeError("rebuild needs a connection with no transaction open")
    if page_size < 1 or flush_rows < 1:
        raise ValueError("page_size and flush_rows must be positive")
    started = time.perf_counter()
    fresh_prefix = REBUILD_PREFIX + prefix
    writer = SqliteProjector(prefix=fresh_prefix, checkpoint_name=checkpoint_name)
    run = RebuildRun(store, conn, fold, due_at, stream_prefix=stream_prefix, page_size=page_size, writer=writer)

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
