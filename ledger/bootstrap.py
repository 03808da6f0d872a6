"""The one place where configuration picks the adapters and wires the ledger together.

``LEDGER_STORE`` (or ``--store``) names the event store:

* ``sqlite:///path/ledger.db`` - the embedded store (the default). Read models live in the same file and
  are written in the append's transaction; personal data in ``path/ledger.personal.db``. One process.
* ``postgresql://user@host:port/db`` - the production store. Read models, personal data and checkpoints in
  the same database; read models written in the append's transaction. Any number of ``ledger serve``
  replicas may share it: appends are checked against the version each decision was made on, and
  time-driven work runs on the replica holding the scheduler lease.
* ``kurrentdb://host:2113?Tls=false`` - see :mod:`ledger.store.kurrentdb` (the event log only; this build does
  not serve on it, see ``docs/kurrentdb.md``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ledger.application.clock import Clock, SystemClock
from ledger.application.personal import PersonalData, PersonalDataStore
from ledger.application.service import LedgerApp, ReplayEntry
from ledger.application.writer import MemberChange
from ledger.domain.state import MemberState
from ledger.store.port import EventStore, StoredEvent
from policies import dump_policy, little_sprout
from projections.rebuild import Fold
from projections.rows import history_row, member_rows
from projections.sqlite_writer import MemberUpdate
from projections.verify import compare

REFERENCE_PROGRAM_ID = "little_sprout"
DEFAULT_STORE = "sqlite:///var/ledger.db"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    pepper: bytes = b"little-sprout-dev-pepper"
    synchronous: str = "FULL"
    reference_program: bool = True
    pool_size: int = 8

    @classmethod
    def from_env(cls, store_url: str | None = None) -> Settings:
        return cls(
            store_url=store_url or os.environ.get("LEDGER_STORE", DEFAULT_STORE),
            pepper=os.environ.get("LEDGER_IDENTITY_PEPPER", "little-sprout-dev-pepper").encode(),
            synchronous=os.environ.get("LEDGER_SQLITE_SYNCHRONOUS", "FULL"),
            pool_size=int(os.environ.get("LEDGER_POOL_SIZE", "8")),
        )

    def without_reference_program(self) -> Settings:
        return replace(self, reference_program=False)


def store_kind(store_url: str) -> str:
    """``sqlite``, ``postgresql`` or ``kurrentdb``; exits with a clear message for anything else."""
    scheme = store_url.split(":", 1)[0].lower()
    if scheme == "sqlite" and store_url.startswith("sqlite:///"):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("kurrentdb", "esdb", "kdb"):
        return "kurrentdb"
    raise SystemExit(
        f"unsupported LEDGER_STORE {store_url!r}: use sqlite:///path, postgresql://... or kurrentdb://..."
    )


def sqlite_path(store_url: str) -> str:
    if store_kind(store_url) != "sqlite":
        raise SystemExit(f"{store_url!r} is not a sqlite:///path store")
    return store_url.removeprefix("sqlite:///")


class Lease(Protocol):
    """Permission to run work that must run on one replica at a time (see ``AdvisoryLease``)."""

    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def close(self) -> None: ...


class _AlwaysHeld:
    """The embedded store serves one process: it always holds every lease."""

    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Projector(Protocol):
    def apply(self, conn: Any, updates: Sequence[MemberUpdate]) -> None: ...


class ReadModels(Protocol):
    def lookup_identity(self, program_id: str, identity: str) -> str | None: ...

    def due_members(self, program_id: str, upto: datetime, limit: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """What one kind of store brings: the log, where read models are written and read, personal data."""

    kind: str
    store: EventStore[Any]
    projector: Projector
    reads: ReadModels
    read_connection: Callable[[], AbstractContextManager[Any]]
    personal: PersonalData
    shared: bool
    lease: Callable[[str], Lease]
    rebuild: Callable[[Fold, Callable[[MemberState], datetime | None]], Any]


class _Borrowed:
    """A context manager handing out an object it does not own (the SQLite per-thread read connection)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __enter__(self) -> Any:
        return self._value

    def __exit__(self, *exc: object) -> None:
        return None


def _sqlite_backend(settings: Settings) -> Backend:
    from ledger.store.sqlite import SqliteEventStore
    from projections.rebuild import rebuild
    from projections.sqlite_queries import SqliteReadModels
    from projections.sqlite_writer import SqliteProjector

    path = sqlite_path(settings.store_url)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteEventStore(path, synchronous=settings.synchronous)  # type: ignore[arg-type]
    projector = SqliteProjector()
    projector.create_schema_at(path)

    def run_rebuild(fold: Fold, due_at: Callable[[MemberState], datetime | None]) -> Any:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            return rebuild(store, conn, fold, due_at)
        finally:
            conn.close()

    return Backend(
        kind="sqlite",
        store=store,
        projector=projector,
        reads=SqliteReadModels(store.read_connection),
        read_connection=lambda: _Borrowed(store.read_connection()),
        personal=PersonalDataStore(str(Path(path).with_suffix(".personal.db"))),
        shared=False,
        lease=lambda _name: _AlwaysHeld(),
        rebuild=run_rebuild,
    )


def _postgres_backend(settings: Settings) -> Backend:
    from ledger.application.personal_postgres import PostgresPersonalDataStore
    from ledger.store.postgres import PostgresEventStore
    from ledger.store.postgres_lease import AdvisoryLease
    from projections.pg_queries import PgReadModels
    from projections.pg_rebuild import rebuild
    from projections.pg_writer import PgProjector

    store = PostgresEventStore(settings.store_url, max_size=settings.pool_size)
    projector = PgProjector()
    with store.connection() as conn, conn.transaction():
        projector.create_schema(conn)

    def run_rebuild(fold: Fold, due_at: Callable[[MemberState], datetime | None]) -> Any:
        with store.connection() as conn:
            return rebuild(store, conn, fold, due_at)

    return Backend(
        kind="postgresql",
        store=store,
        projector=projector,
        reads=PgReadModels(store.connection),
        read_connection=store.connection,
        personal=PostgresPersonalDataStore(store.connection),
        shared=True,
        lease=lambda name: AdvisoryLease(settings.store_url, name),
        rebuild=run_rebuild,
    )


def open_backend(settings: Settings) -> Backend:
    kind = store_kind(settings.store_url)
    if kind == "sqlite":
        return _sqlite_backend(settings)
    if kind == "postgresql":
        return _postgres_backend(settings)
    raise SystemExit(
        "kurrentdb:// holds the event log through ledger.store.kurrentdb, but this build serves only on "
        "sqlite:/// and postgresql:// (read models need a transaction shared with the log); see docs/kurrentdb.md"
    )


@dataclass(frozen=True, slots=True)
class Wired:
    app: LedgerApp
    backend: Backend
    settings: Settings


def build(settings: Settings, clock: Clock | None = None) -> Wired:
    backend = open_backend(settings)
    projector = backend.projector

    def project(tx: Any, stored: list[StoredEvent], changes: Sequence[MemberChange]) -> None:
        by_id = {s.event_id: s for s in stored}
        updates = [
            MemberUpdate(
                program_id=c.program_id,
                member_id=c.member_id,
                state=c.state,
                history=[
                    history_row(by_id[new.event_id], event, before, after)
                    for event, new, before, after in c.events
                ],
                due_at=c.due_at,
                identities_added=list(c.identities_added),
            )
            for c in changes
        ]
        projector.apply(tx, updates)

    def check(state: MemberState, entries: list[ReplayEntry]) -> list[str]:
        history = [history_row(e.stored, e.event, e.before, e.after) for e in entries]
        with backend.read_connection() as conn:
            return [str(m) for m in compare(member_rows(state), history, conn, state.program_id, state.member_id)]

    reads = backend.reads
    app = LedgerApp(
        backend.store,
        clock or SystemClock(),
        backend.personal,
        project=project,
        identity_owner=reads.lookup_identity,
        due_members=reads.due_members,
        check_projection=check,
        pepper=settings.pepper,
        shared=backend.shared,
    )
    if settings.reference_program and REFERENCE_PROGRAM_ID not in app.program_ids():
        app.create_program(
            REFERENCE_PROGRAM_ID,
            "Little Sprout",
            dump_policy(little_sprout()),
            "real",
            None,
            idempotency_key="bootstrap:create-reference-program",
        )
    return Wired(app, backend, settings)


def feed_runner(wired: Wired, nats_url: str) -> Any:
    """The relay of the log (and lifecycle signals) to NATS JetStream at ``nats_url``, under the ``feed`` lease."""
    from ledger.feed.checkpoint import CheckpointStore, PostgresCheckpoints, SqliteCheckpoints
    from ledger.feed.publisher import JetStreamPublisher
    from ledger.feed.relay import FeedRelay
    from ledger.feed.runner import FeedRunner

    backend = wired.backend
    checkpoints: CheckpointStore
    if backend.kind == "postgresql":
        checkpoints = PostgresCheckpoints(backend.read_connection)
    else:
        checkpoints = SqliteCheckpoints.at(sqlite_path(wired.settings.store_url))
    from ledger.feed.signals import scan

    app = wired.app
    relay = FeedRelay(backend.store, checkpoints, JetStreamPublisher(nats_url))
    return FeedRunner(
        relay,
        backend.lease("feed"),
        scan=lambda: scan(app.store, backend.read_connection, app.now, program_ids=app.program_ids()),
    )


def build_app(settings: Settings, clock: Clock | None = None) -> LedgerApp:
    return build(settings, clock).app


def reference_document() -> str:
    return dump_policy(little_sprout())
