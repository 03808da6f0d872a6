"""The stores the ledger runs on, each with its read models, personal data, leases and rebuild.

:func:`open_backend` picks one by the store URL's scheme (see :mod:`ledger.bootstrap` for what each means).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ledger.adapters.sqlite.projector import MemberUpdate
from ledger.application.personal import PersonalData, PersonalDataStore
from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore
from ledger.settings import Settings, sqlite_path, store_kind
from projections.rebuild import Fold

DEFAULT_READ_MODELS = "sqlite:///var/read-models.db"


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
    read_models_url: str
    """Where the read models, checkpoints and personal data live (``sqlite:///...`` or ``postgresql://...``)."""
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
    from ledger.adapters.sqlite.lease import FileLease
    from ledger.adapters.sqlite.projector import SqliteProjector
    from ledger.adapters.sqlite.read_models import SqliteReadModels
    from ledger.adapters.sqlite.store import SqliteEventStore
    from projections.rebuild import rebuild

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

    # One process owns what it caches and always holds every lease. Several processes on one file (each its
    # own writer) run as replicas do: each group reads what the others appended, appends are checked against
    # the versions decided on, and time-driven work runs in the process holding a file lease.
    shared = settings.processes > 1
    lease: Callable[[str], Lease] = (
        (lambda name: FileLease(path, name)) if shared else (lambda _name: _AlwaysHeld())
    )
    return Backend(
        kind="sqlite",
        store=store,
        read_models_url=settings.store_url,
        projector=projector,
        reads=SqliteReadModels(store.read_connection),
        read_connection=lambda: _Borrowed(store.read_connection()),
        personal=PersonalDataStore(str(Path(path).with_suffix(".personal.db")), shared=shared),
        shared=shared,
        lease=lease,
        rebuild=run_rebuild,
    )


def _postgres_backend(settings: Settings) -> Backend:
    from ledger.adapters.postgres.lease import AdvisoryLease
    from ledger.adapters.postgres.personal import PostgresPersonalDataStore
    from ledger.adapters.postgres.projector import PgProjector
    from ledger.adapters.postgres.read_models import PgReadModels
    from ledger.adapters.postgres.rebuild import rebuild
    from ledger.adapters.postgres.store import PostgresEventStore

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
        read_models_url=settings.store_url,
        projector=projector,
        reads=PgReadModels(store.connection),
        read_connection=store.connection,
        personal=PostgresPersonalDataStore(store.connection),
        shared=True,
        lease=lambda name: AdvisoryLease(settings.store_url, name),
        rebuild=run_rebuild,
    )




def kurrentdb_backend(
    settings: Settings, *, client: Any = None, read_models: str | None = None, namespace: str = ""
) -> Backend:
    """The event log in KurrentDB, everything else in ``read_models`` (default ``$LEDGER_READ_MODELS``).

    ``client`` replaces the ``KurrentDBClient`` the store would open (tests pass an in-memory stand-in,
    :class:`ledger.adapters.kurrentdb.fake.FakeKurrentDB`); ``namespace`` prefixes the server's stream names.
    """
    from ledger.adapters.kurrentdb.store import KurrentDBEventStore

    url = read_models or os.environ.get("LEDGER_READ_MODELS", DEFAULT_READ_MODELS)
    kind = store_kind(url)
    if kind == "kurrentdb":
        raise SystemExit(f"LEDGER_READ_MODELS {url!r}: read models need sqlite:///path or postgresql://...")
    store = KurrentDBEventStore(settings.store_url, client=client, namespace=namespace)
    if kind == "sqlite":
        from ledger.adapters.sqlite.projector import SqliteProjector
        from ledger.adapters.sqlite.read_models import SqliteReadModels
        from ledger.adapters.sqlite.readers import SqliteReaders
        from ledger.application.personal import PersonalDataStore
        from projections.rebuild import rebuild

        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        readers = SqliteReaders(path)
        sqlite_projector = SqliteProjector()
        sqlite_projector.create_schema_at(path)

        def run_sqlite_rebuild(fold: Fold, due_at: Callable[[MemberState], datetime | None]) -> Any:
            # The switch-over's lock covers the read-model file: projections wait for it, appends do not
            # (they are in KurrentDB); those committed after its last read are projected after it, past the
            # checkpoint it sets.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            try:
                return rebuild(store, conn, fold, due_at)
            finally:
                conn.close()

        return Backend(
            kind="kurrentdb",
            store=store,
            read_models_url=url,
            projector=sqlite_projector,
            reads=SqliteReadModels(readers.connection),
            read_connection=lambda: _Borrowed(readers.connection()),
            personal=PersonalDataStore(str(Path(path).with_suffix(".personal.db"))),
            shared=False,
            lease=lambda _name: _AlwaysHeld(),
            rebuild=run_sqlite_rebuild,
        )

    from psycopg_pool import ConnectionPool

    from ledger.adapters.postgres.lease import AdvisoryLease
    from ledger.adapters.postgres.personal import PostgresPersonalDataStore
    from ledger.adapters.postgres.projector import PgProjector
    from ledger.adapters.postgres.read_models import PgReadModels
    from ledger.adapters.postgres.rebuild import rebuild as pg_rebuild

    pool: Any = ConnectionPool(
        url,
        min_size=1,
        max_size=settings.pool_size,
        kwargs={"autocommit": True},
        open=False,
        name="ledger-read-models",
    )
    pool.open(wait=True, timeout=30.0)
    pg_projector = PgProjector()
    with pool.connection() as conn:
        pg_projector.create_schema(conn)

    def run_pg_rebuild(fold: Fold, due_at: Callable[[MemberState], datetime | None]) -> Any:
        with pool.connection() as conn:
            return pg_rebuild(store, conn, fold, due_at)

    return Backend(
        kind="kurrentdb",
        store=store,
        read_models_url=url,
        projector=pg_projector,
        reads=PgReadModels(pool.connection),
        read_connection=pool.connection,
        personal=PostgresPersonalDataStore(pool.connection),
        shared=True,
        lease=lambda name: AdvisoryLease(url, name),
        rebuild=run_pg_rebuild,
    )


def open_backend(settings: Settings) -> Backend:
    kind = store_kind(settings.store_url)
    if kind == "sqlite":
        return _sqlite_backend(settings)
    if kind == "postgresql":
        return _postgres_backend(settings)
    return kurrentdb_backend(settings)
