"""The PostgreSQL backend wired as one :class:`~ledger.adapters.backend.Backend`: log, read models, vault, leases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger.adapters.backend import Backend, InWorker
from ledger.domain.state import MemberState
from ledger.settings import Settings
from projections.rebuild import Fold


def postgres_backend(settings: Settings) -> Backend:
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

    def run_rebuild(
        fold: Fold,
        due_at: Callable[[MemberState], datetime | None],
        workers: int = 0,
        in_worker: InWorker | None = None,
    ) -> Any:
        def reopen() -> PostgresEventStore:  # in a worker process, after the fork
            opened = PostgresEventStore(settings.store_url, max_size=2)
            if in_worker is not None:
                in_worker(PostgresPersonalDataStore(opened.connection))
            return opened

        with store.connection() as conn:
            if workers > 0:
                return rebuild(store, conn, fold, due_at, workers=workers, reopen=reopen)
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
