"""The one place where configuration picks the adapters and wires the ledger together.

``LEDGER_STORE`` (or ``--store``) names the event store:

* ``sqlite:///path/ledger.db`` - the embedded store (the default). Read models live in the same file and
  are written in the append's transaction; personal data in ``path/ledger.personal.db``. One process, or
  ``--processes N`` sharing the file as replicas do (a file lock serialises appends, file leases elect the
  scheduler and the feed).
* ``postgresql://user@host:port/db`` - the production store. Read models, personal data and checkpoints in
  the same database; read models written in the append's transaction. Any number of ``ledger serve``
  replicas may share it: appends are checked against the version each decision was made on, and
  time-driven work runs on the replica holding the scheduler lease.
* ``kurrentdb://host:2113?Tls=false`` - the event log in KurrentDB (:mod:`ledger.adapters.kurrentdb.store`); read models,
  personal data and checkpoints in ``LEDGER_READ_MODELS``: a SQLite file (``sqlite:///path``, the default
  ``sqlite:///var/read-models.db``, one process) or a PostgreSQL database (``postgresql://...``, replicas may
  share it; leases are advisory locks there). KurrentDB cannot share a transaction with them, so the writer
  appends first and projects after the commit, in a read-model transaction of its own, before answering
  (see ``docs/kurrentdb.md``).

Every backend starts by catching its read models up with the log (:class:`projections.runner.ProjectionRunner`),
so events appended by a process that died before projecting them are projected before anything is served.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.adapters.backend import Backend
from ledger.application.clock import Clock, SystemClock
from ledger.application.keys import ALL_PROGRAMS, KeyRing
from ledger.application.ports import CheckpointStore, WebhookStore
from ledger.application.service import LedgerApp, ReplayEntry
from ledger.application.writer import MemberChange
from ledger.domain.state import MemberState
from ledger.eventlog.port import StoredEvent
from ledger.settings import DEFAULT_STORE, Settings, sqlite_path, store_kind
from policies import dump_policy, little_sprout
from projections.rebuild import Fold
from projections.rows import HistoryRow, history_row, member_rows
from projections.update import MemberUpdate
from projections.verify import compare

__all__ = [
    "DEFAULT_STORE",
    "REFERENCE_PROGRAM_ID",
    "Backend",
    "Settings",
    "Wired",
    "admin_key_path",
    "build",
    "build_app",
    "feed_runner",
    "first_admin_key",
    "migrate_store",
    "open_backend",
    "reference_document",
    "sqlite_path",
    "store_kind",
    "webhook_runner",
    "webhook_store",
]

REFERENCE_PROGRAM_ID = "little_sprout"


@dataclass(frozen=True, slots=True)
class Wired:
    app: LedgerApp
    backend: Backend
    settings: Settings
    keys: KeyRing


# Long (about 80 lines) for a reason: the closures project and check need the app and the runner, made after them.
def build(settings: Settings, clock: Clock | None = None, *, backend: Backend | None = None) -> Wired:
    """Wire the app on ``backend`` (default: the one ``settings`` names) after catching its read models up."""
    from projections.runner import ProjectionRunner

    backend = backend or open_backend(settings)
    projector = backend.projector
    runner: ProjectionRunner | None = None

    def project(tx: Any, stored: list[StoredEvent], changes: Sequence[MemberChange]) -> None:
        """Project a committed group: in the append's transaction ``tx``, or (``tx`` None: the store has no
        transaction to share) in a read-model transaction of the runner's, which also moves the checkpoint."""
        by_id = {s.event_id: s for s in stored}
        updates = [
            MemberUpdate(
                program_id=c.program_id,
                member_id=c.member_id,
                state=c.state,
                history=[
                    history_row(by_id[new.event_id], event, before, after, tz=zone, tier_after=tier)
                    for zone in (app.time_zone(c.program_id),)
                    for event, new, before, after, tier in c.events
                ],
                due_at=c.due_at,
                identities_added=list(c.identities_added),
            )
            for c in changes
        ]
        if tx is None:
            assert runner is not None, "the runner exists before the first command is served"
            runner.project_committed(stored, updates)
        else:
            projector.apply(tx, updates)

    def check(state: MemberState, entries: list[ReplayEntry]) -> list[str]:
        zone = app.time_zone(state.program_id)
        history = [history_row(e.stored, e.event, e.before, e.after, tz=zone, tier_after=e.tier_after) for e in entries]
        with backend.read_connection() as conn:
            return [
                str(m) for m in compare(member_rows(state), history, conn, state.program_id, state.member_id)
            ]

    reads = backend.reads
    app = LedgerApp(
        backend.store,
        clock or SystemClock(),
        backend.personal,
        project=project,
        identity_owner=reads.lookup_identity,
        due_members=reads.due_members,
        check_projection=check,
        balance_now=reads.balance_now,
        history_through=reads.history_through,
        lots_in_debit_order=reads.lots_in_debit_order,
        standing_now=reads.standing_now,
        member_now=reads.member_now,
        pepper=settings.pepper,
        max_queue=settings.write_queue,
        shared=backend.shared,
        project_in_transaction=backend.project_in_transaction,
    )
    runner = ProjectionRunner(
        backend.store,
        projector,
        backend.read_connection,
        due_at=app.due_at,
        fold=history_fold(app),
    )
    runner.catch_up()  # read models lagging the log (a process died between commit and projection)
    if settings.reference_program and REFERENCE_PROGRAM_ID not in app.program_ids():
        app.create_program(
            REFERENCE_PROGRAM_ID,
            "Little Sprout",
            dump_policy(little_sprout()),
            "real",
            None,
            idempotency_key="bootstrap:create-reference-program",
        )
    return Wired(app, backend, settings, KeyRing(backend.store, app.clock))


def history_fold(app: LedgerApp) -> Fold:
    """The fold that catches read models up and rebuilds them: history rows with the tier after each event and
    summaries in the program's time zone, as the writer projects them."""
    from projections.runner import member_fold

    def fold(state: MemberState | None, events: Sequence[StoredEvent]) -> tuple[MemberState, list[HistoryRow]]:
        return member_fold(state, events, tier_of=app.tier_in_effect, zone_of=app.time_zone)

    return fold


def checkpoint_store(backend: Backend) -> CheckpointStore:
    """Where the backend keeps named positions (the feed's): beside its read models."""
    from ledger.adapters.memory.checkpoint import MemoryCheckpoints
    from ledger.adapters.postgres.checkpoint import PostgresCheckpoints
    from ledger.adapters.sqlite.checkpoint import SqliteCheckpoints

    if backend.kind == "memory":
        return MemoryCheckpoints()
    if store_kind(backend.read_models_url) == "postgresql":
        return PostgresCheckpoints(backend.read_connection)
    return SqliteCheckpoints.at(sqlite_path(backend.read_models_url))


def webhook_store(backend: Backend) -> WebhookStore:
    """Where the backend keeps webhook subscriptions and dead letters: beside its read models."""
    from ledger.adapters.postgres.webhooks import PostgresWebhooks
    from ledger.adapters.sqlite.webhooks import SqliteWebhooks

    if backend.webhooks is not None:
        return backend.webhooks
    if store_kind(backend.read_models_url) == "postgresql":
        return PostgresWebhooks(backend.read_connection)
    return SqliteWebhooks.at(sqlite_path(backend.read_models_url))


def feed_runner(wired: Wired, nats_url: str) -> Any:
    """The relay of the log (and lifecycle signals) to NATS JetStream at ``nats_url``, under the ``feed`` lease."""
    from ledger.feed.publisher import JetStreamPublisher
    from ledger.feed.relay import FeedRelay
    from ledger.feed.runner import FeedRunner
    from ledger.feed.signal_scan import scan

    backend = wired.backend
    checkpoints = checkpoint_store(backend)

    app = wired.app
    relay = FeedRelay(backend.store, checkpoints, JetStreamPublisher(nats_url))
    return FeedRunner(
        relay,
        backend.lease("feed"),
        scan=lambda: scan(app.store, backend.read_connection, app.now, program_ids=app.program_ids()),
    )


def webhook_runner(wired: Wired, on_deliverer: Any = None) -> Any:
    """The webhook deliverer of every subscription, under the ``webhooks`` lease; ``on_deliverer`` (e.g. the
    metrics' ``watch_webhooks``) is called with the deliverer before it starts."""
    from ledger.webhooks.deliverer import RetryPolicy, WebhookDeliverer
    from ledger.webhooks.runner import WebhookRunner
    from ledger.webhooks.transport import HttpTransport

    settings = wired.settings
    transport = HttpTransport(timeout_seconds=settings.webhook_timeout, allow_loopback_http=settings.sandbox)
    deliverer = WebhookDeliverer(
        wired.backend.store, webhook_store(wired.backend), transport, wired.app.clock,
        policy=RetryPolicy(max_attempts=settings.webhook_max_attempts),
    )  # fmt: skip
    if on_deliverer is not None:
        on_deliverer(deliverer)
    return WebhookRunner(deliverer, wired.backend.lease("webhooks"))


def build_app(settings: Settings, clock: Clock | None = None) -> LedgerApp:
    return build(settings, clock).app


def reference_document() -> str:
    return dump_policy(little_sprout())


def open_backend(settings: Settings) -> Backend:
    kind = store_kind(settings.store_url)
    if kind == "sqlite":
        from ledger.adapters.sqlite.factory import sqlite_backend

        return sqlite_backend(settings)
    if kind == "postgresql":
        from ledger.adapters.postgres.factory import postgres_backend

        return postgres_backend(settings)
    if kind == "memory":
        from ledger.adapters.memory.factory import memory_backend

        return memory_backend(settings)
    from ledger.adapters.kurrentdb.factory import kurrentdb_backend

    return kurrentdb_backend(settings)


def migrate_store(settings: Settings) -> tuple[list[int], int]:
    """Apply the PostgreSQL store's pending migrations: the versions applied now, and the schema version after."""
    import psycopg

    from ledger.adapters.postgres.migrations import current_version, migrate

    with psycopg.connect(settings.store_url, autocommit=True) as conn:
        applied = migrate(conn)
        return applied, current_version(conn)


ADMIN_KEY_FILE = "admin.key"


def admin_key_path(settings: Settings, configured: str | None = None) -> Path | None:
    """Where a fresh store's first admin key is written: ``configured`` (``--admin-key-file``,
    ``$LEDGER_ADMIN_KEY_FILE``), else beside the SQLite file; None for a server store with none configured."""
    chosen = configured or settings.admin_key_file
    if chosen:
        return Path(chosen)
    if store_kind(settings.store_url) == "sqlite":
        return Path(sqlite_path(settings.store_url)).parent / ADMIN_KEY_FILE
    return None


def first_admin_key(wired: Wired, path: Path | None) -> Path | None:
    """On a store with no key yet, issue one deployment admin key and write its secret alone to ``path`` (mode
    0600, never overwriting a file); return the path, or None when keys exist already."""
    if not wired.keys.is_empty():
        return None
    if path is None:
        raise SystemExit(
            "no API key exists yet: give --admin-key-file PATH (or $LEDGER_ADMIN_KEY_FILE) for the first admin key, "
            "or create one with `ledger keys create --program '*' --role admin`"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    _, token = wired.keys.issue(ALL_PROGRAMS, "admin", name="first start")
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path
