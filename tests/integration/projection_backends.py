"""One projection test harness over both read-model databases: SQLite (in the event store's file) and
PostgreSQL (in the event store's database, a fresh schema per test).

A :class:`Ledger` appends batches to its event store and projects them in the append's transaction, as the
service does; everything a test needs that differs between the databases (a writer connection, tampering,
counting rewritten rows, rebuilding, listing schema objects) is a method here, so the tests themselves are
written once and parametrized over :data:`BACKENDS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ledger.adapters.postgres import rebuild as pg_rebuild
from ledger.adapters.postgres.projector import PgProjector
from ledger.adapters.postgres.read_models import PgReadModels
from ledger.adapters.sqlite import rebuild as sqlite_rebuild
from ledger.adapters.sqlite.projector import SqliteProjector
from ledger.adapters.sqlite.read_models import SqliteReadModels
from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.domain import events as ev
from ledger.domain.state import MemberState
from ledger.eventlog.port import AppendBatch, EventStore, NewEvent, StoredEvent, StreamAppend
from projections.codec import (
    BALANCE,
    DUE,
    HISTORY,
    IDENTITY,
    LOT,
    STANDING,
    TIER,
    RowCodec,
)
from projections.rebuild import RebuildReport
from projections.tables import TABLES
from projections.update import MemberUpdate
from tests.unit.projections.projection_timeline import (
    PROGRAM,
    absorbed,
    activated,
    awarded,
    enrolled,
    fold_stored,
    member_one,
    merged,
    new_event,
    purchase,
    sh,
    simple_due_at,
    stream,
)

BACKENDS = ("sqlite", "postgres")

_KEYED: tuple[RowCodec[Any], ...] = (BALANCE, TIER, DUE, LOT, HISTORY, IDENTITY, STANDING)


class Ledger:
    """A minimal write path: append a batch and project it in the same transaction."""

    name = ""
    store: EventStore[Any]
    reads: SqliteReadModels | PgReadModels
    projector: SqliteProjector | PgProjector

    def __init__(self) -> None:
        self.states: dict[str, MemberState] = {}
        self.counter = 0
        self.fail_in_transaction = False

    # -- the write path -------------------------------------------------------------------------------------

    def append(
        self, batch: dict[str, list[ev.MemberEvent]], *, program_event: bool = False
    ) -> list[StoredEvent]:
        appends: list[StreamAppend] = []
        for member_id, events in batch.items():
            news: list[NewEvent] = []
            for event in events:
                self.counter += 1
                news.append(new_event(event, f"ev-{self.counter}", key=f"cmd-{self.counter}"))
            sid = stream(member_id)
            appends.append(StreamAppend(sid, self.store.stream_version(sid), news))
        if program_event:
            self.counter += 1
            other = NewEvent(
                f"ev-{self.counter}",
                "ClockAdvanced",
                1,
                sh(2026, 3, 1),
                sh(2026, 3, 1),
                None,
                None,
                None,
                None,
                {},
                b"{}",
            )
            appends.append(StreamAppend(f"program-{PROGRAM}", -1, [other]))
        return self.store.append(AppendBatch(appends), in_transaction=self._project)

    def _project(self, conn: Any, stored: list[StoredEvent]) -> None:
        by_stream: dict[str, list[StoredEvent]] = {}
        for s in stored:
            if s.stream_id.startswith("member-"):
                by_stream.setdefault(s.stream_id, []).append(s)
        updates: list[MemberUpdate] = []
        for sid, events in by_stream.items():
            state, history = fold_stored(self.states.get(sid), events)
            self.states[sid] = state
            identities = [
                i
                for e in (ev.decode(s.payload) for s in events)
                if isinstance(e, ev.MemberEnrolled | ev.MemberAbsorbed)
                for i in e.identities
            ]
            updates.append(
                MemberUpdate(
                    state.program_id, state.member_id, state, history, simple_due_at(state), identities
                )
            )
        self.projector.apply(conn, updates)
        if self.fail_in_transaction:
            raise RuntimeError("boom")

    def state(self, member_id: str) -> MemberState:
        return self.states[stream(member_id)]

    # -- what differs between the databases ------------------------------------------------------------------

    def writer(self) -> AbstractContextManager[Any]:
        """A connection of its own for writes, each statement committed at once (autocommit)."""
        raise NotImplementedError

    def execute(self, statement: str) -> None:
        """Run one statement (no parameters) on a writer connection and commit it."""
        with self.writer() as conn:
            conn.execute(statement)

    def reader(self) -> Any:
        """A connection for :func:`projections.verify.compare`."""
        raise NotImplementedError

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def dump(self, prefix: str = "") -> dict[str, list[tuple[Any, ...]]]:
        return {table: sorted(self.rows(f"SELECT * FROM {prefix}{table}"), key=repr) for table in TABLES}

    def object_names(self) -> set[str]:
        """The tables and indexes of the database (of the test's schema)."""
        raise NotImplementedError

    def apply_in_rolled_back_transaction(
        self, work: Callable[[Callable[[list[MemberUpdate]], int]], None]
    ) -> None:
        """Run ``work(apply)`` in one transaction that is rolled back after it; ``apply(updates)`` projects
        the updates and returns how many rows it inserted, rewrote or deleted."""
        raise NotImplementedError

    def rebuild(self, store: Any = None, **options: Any) -> RebuildReport:
        raise NotImplementedError

    def close(self) -> None:
        self.store.close()


class SqliteLedger(Ledger):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.sqlite_store = SqliteEventStore(path, synchronous="OFF")
        self.store = self.sqlite_store
        projector = SqliteProjector()
        projector.create_schema_at(path)
        self.projector = projector
        self.reads = SqliteReadModels(self.sqlite_store.read_connection)

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            yield conn
        finally:
            conn.close()

    def reader(self) -> sqlite3.Connection:
        return self.sqlite_store.read_connection()

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        return self.reader().execute(statement).fetchall()

    def object_names(self) -> set[str]:
        return {str(r[0]) for r in self.rows("SELECT name FROM sqlite_master")}

    def apply_in_rolled_back_transaction(
        self, work: Callable[[Callable[[list[MemberUpdate]], int]], None]
    ) -> None:
        projector = self.projector
        assert isinstance(projector, SqliteProjector)
        with self.writer() as conn:
            conn.execute("BEGIN IMMEDIATE")

            def apply(updates: list[MemberUpdate]) -> int:
                before = conn.total_changes
                projector.apply(conn, updates)
                return conn.total_changes - before

            try:
                work(apply)
            finally:
                conn.execute("ROLLBACK")

    def rebuild(self, store: Any = None, **options: Any) -> RebuildReport:
        fold = options.pop("fold", fold_stored)
        if "workers" in options:  # the fold in worker processes, which open the log again
            options["reopen"] = lambda: SqliteEventStore(self.path, synchronous="OFF")
        with self.writer() as conn:
            return sqlite_rebuild.rebuild(store or self.store, conn, fold, simple_due_at, **options)


class PgLedger(Ledger):
    name = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        from ledger.adapters.postgres.store import PostgresEventStore

        self.url = url
        self.pg_store = PostgresEventStore(url, max_size=4)
        self.store = self.pg_store
        projector = PgProjector()
        with self.pg_store.connection() as conn:
            projector.create_schema(conn)
        self.projector = projector
        self.reads = PgReadModels(self.pg_store.connection)
        self._reader: psycopg.Connection[Any] | None = None

    @contextmanager
    def writer(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            yield conn

    def reader(self) -> psycopg.Connection[Any]:
        if self._reader is None or self._reader.closed:
            self._reader = psycopg.connect(self.url, autocommit=True)
        return self._reader

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        with self.reader().cursor(row_factory=tuple_row) as cur:
            cur.execute(statement.encode())
            return cur.fetchall()

    def object_names(self) -> set[str]:
        return {
            str(r[0])
            for r in self.rows(
                "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            )
        }

    def apply_in_rolled_back_transaction(
        self, work: Callable[[Callable[[list[MemberUpdate]], int]], None]
    ) -> None:
        """Rows rewritten are counted by their ``ctid`` (an updated row gets a new tuple version)."""
        projector = self.projector
        assert isinstance(projector, PgProjector)
        with self.writer() as conn:

            def versions() -> dict[tuple[Any, ...], str]:
                out: dict[tuple[Any, ...], str] = {}
                for codec in _KEYED:
                    keys = ", ".join(codec.key)
                    for *key, ctid in conn.execute(f"SELECT {keys}, ctid::text FROM {codec.table}".encode()):
                        out[(codec.table, *key)] = ctid
                for name, ctid in conn.execute(b"SELECT name, ctid::text FROM projection_checkpoint"):
                    out[("projection_checkpoint", name)] = ctid
                return out

            def apply(updates: list[MemberUpdate]) -> int:
                before = versions()
                projector.apply(conn, updates)
                after = versions()
                return sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))

            conn.execute(b"BEGIN")
            try:
                work(apply)
            finally:
                conn.execute(b"ROLLBACK")

    def rebuild(self, store: Any = None, **options: Any) -> RebuildReport:
        from ledger.adapters.postgres.store import PostgresEventStore

        fold = options.pop("fold", fold_stored)
        if "workers" in options:  # the fold in worker processes, which open the log again
            options["reopen"] = lambda: PostgresEventStore(self.url, max_size=2)
        with self.writer() as conn:
            return pg_rebuild.rebuild(store or self.store, conn, fold, simple_due_at, **options)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().close()


def scenario(ledger: Ledger) -> None:
    one = member_one()
    ledger.append(
        {
            "m1": one[:6],
            "m2": [
                enrolled(sh(2026, 3, 1, 11), "m2", ["idh-m2"]),
                purchase(sh(2026, 3, 5), "O10", 100, active_at=sh(2026, 3, 20)),
            ],
            "m3": [enrolled(sh(2026, 3, 1, 12), "m3", ["idh-m3"]), awarded(sh(2026, 3, 2), "B-1", 25)],
        },
        program_event=True,
    )
    ledger.append({"m1": one[6:], "m2": [activated(sh(2026, 3, 20), "P-O10", 100)]})
    ledger.append(
        {
            "m3": [merged(sh(2026, 6, 1), "m2", 25)],
            "m2": [absorbed(sh(2026, 6, 1), "m3", [("B-1", 25, sh(2026, 3, 2))], ["idh-m3"])],
        }
    )
