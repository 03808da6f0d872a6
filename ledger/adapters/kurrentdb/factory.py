"""The KurrentDB backend wired as one :class:`~ledger.adapters.backend.Backend`, read models in SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger.adapters.backend import Backend
from ledger.adapters.sqlite.factory import sqlite_beside
from ledger.domain.state import MemberState
from ledger.settings import Settings, sqlite_path, store_kind
from projections.rebuild import Fold


def kurrentdb_backend(
    settings: Settings, *, client: Any = None, read_models: str | None = None, namespace: str = ""
) -> Backend:
    """The event log in KurrentDB, everything else in ``read_models`` (default ``$LEDGER_READ_MODELS``).

    ``client`` replaces the ``KurrentDBClient`` the store would open (tests pass an in-memory stand-in,
    :class:`ledger.adapters.kurrentdb.fake.FakeKurrentDB`); ``namespace`` prefixes the server's stream names.
    """
    from ledger.adapters.kurrentdb.store import KurrentDBEventStore

    url = read_models or settings.read_models_url
    kind = store_kind(url)
    if kind == "kurrentdb":
        raise SystemExit("LEDGER_READ_MODELS: read models need sqlite:///path or postgresql://...")
    store = KurrentDBEventStore(settings.store_url, client=client, namespace=namespace)
    if kind == "sqlite":
        return sqlite_beside(store, sqlite_path(url), kind="kurrentdb", read_models_url=url)

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

    def run_pg_rebuild(
        fold: Fold, due_at: Callable[[MemberState], datetime | None], workers: int = 0, in_worker: Any = None
    ) -> Any:
        with pool.connection() as conn:  # in this process whatever ``workers`` says (the log is KurrentDB)
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
