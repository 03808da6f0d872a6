"""The SQLite backend wired as one :class:`~ledger.adapters.backend.Backend`: log, read models, vault, leases."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.adapters.backend import Backend, InWorker
from ledger.adapters.sqlite.personal import PersonalDataStore
from ledger.application.ports import Lease
from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore
from ledger.settings import Settings, sqlite_path
from projections.rebuild import Fold


class AlwaysHeld:
    """The embedded store serves one process: it always holds every lease."""

    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Borrowed:
    """A context manager handing out an object it does not own (the SQLite per-thread read connection)."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def __enter__(self) -> Any:
        return self._value

    def __exit__(self, *exc: object) -> None:
        return None


def sqlite_backend(settings: Settings) -> Backend:
    from ledger.adapters.sqlite.lease import FileLease
    from ledger.adapters.sqlite.projector import SqliteProjector
    from ledger.adapters.sqlite.read_models import SqliteReadModels
    from ledger.adapters.sqlite.rebuild import rebuild
    from ledger.adapters.sqlite.store import SqliteEventStore

    path = sqlite_path(settings.store_url)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteEventStore(path, synchronous=settings.synchronous)  # type: ignore[arg-type]
    projector = SqliteProjector()
    projector.create_schema_at(path)

    personal_path = str(Path(path).with_suffix(".personal.db"))

    def run_rebuild(
        fold: Fold,
        due_at: Callable[[MemberState], datetime | None],
        workers: int = 0,
        in_worker: InWorker | None = None,
    ) -> Any:
        def reopen() -> SqliteEventStore:  # in a worker process, after the fork
            if in_worker is not None:
                in_worker(PersonalDataStore(personal_path, shared=True))
            return SqliteEventStore(path, synchronous=settings.synchronous)  # type: ignore[arg-type]

        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            if workers > 0:
                return rebuild(store, conn, fold, due_at, workers=workers, reopen=reopen)
            return rebuild(store, conn, fold, due_at)
        finally:
            conn.close()

    # One process owns what it caches and always holds every lease. Several processes on one file (each its
    # own writer) run as replicas do: each group reads what the others appended, appends are checked against
    # the versions decided on, and time-driven work runs in the process holding a file lease.
    shared = settings.processes > 1
    lease: Callable[[str], Lease] = (
        (lambda name: FileLease(path, name)) if shared else (lambda _name: AlwaysHeld())
    )
    return Backend(
        kind="sqlite",
        store=store,
        read_models_url=settings.store_url,
        projector=projector,
        reads=SqliteReadModels(store.read_connection),
        read_connection=lambda: Borrowed(store.read_connection()),
        personal=PersonalDataStore(personal_path, shared=shared),
        shared=shared,
        lease=lease,
        rebuild=run_rebuild,
    )


def sqlite_beside(store: EventStore[Any], path: str, *, kind: str, read_models_url: str) -> Backend:
    """Read models, checkpoints and personal data in the SQLite file ``path`` beside a log that cannot share
    their transaction (KurrentDB, the in-memory log): the writer projects right after each commit."""
    from ledger.adapters.sqlite.personal import PersonalDataStore
    from ledger.adapters.sqlite.projector import SqliteProjector
    from ledger.adapters.sqlite.read_models import SqliteReadModels
    from ledger.adapters.sqlite.readers import SqliteReaders
    from ledger.adapters.sqlite.rebuild import rebuild

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    readers = SqliteReaders(path)
    projector = SqliteProjector()
    projector.create_schema_at(path)

    def run_rebuild(
        fold: Fold,
        due_at: Callable[[MemberState], datetime | None],
        workers: int = 0,
        in_worker: InWorker | None = None,
    ) -> Any:
        # In this process whatever ``workers`` says: the log (KurrentDB, memory) is not in this file. The switch-over's lock covers the read-model file: projections wait for it, appends do not (they
        # are in the other log); those committed after its last read are projected after it, past the
        # checkpoint it sets.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            return rebuild(store, conn, fold, due_at)
        finally:
            conn.close()

    return Backend(
        kind=kind,
        store=store,
        read_models_url=read_models_url,
        projector=projector,
        reads=SqliteReadModels(readers.connection),
        read_connection=lambda: Borrowed(readers.connection()),
        personal=PersonalDataStore(str(Path(path).with_suffix(".personal.db"))),
        shared=False,
        lease=lambda _name: AlwaysHeld(),
        rebuild=run_rebuild,
        project_in_transaction=False,
    )
