"""The PostgreSQL store's schema as a list of numbered migrations, applied in order when a store is opened.

``schema_migrations`` records each applied migration once. :func:`migrate` applies every missing migration
in one transaction that first takes a transaction-scoped advisory lock, so replicas starting at the same
time apply each migration exactly once (the second waits, then finds nothing left to do). DDL is
transactional in PostgreSQL: a failing migration leaves the schema as it was. Add new migrations at the end
with the next number; never edit one that has shipped.

Tables live in the first schema of the connection's ``search_path`` (unqualified names), so one database
can hold several stores, one per schema.

Times are ``timestamptz`` (microsecond precision, the same as :class:`datetime.datetime`, so they round-trip
exactly); hashes are 32-byte ``bytea``; the actor is its canonical JSON as ``text`` (``actor::jsonb`` in
queries). Stream and event ids use the "C" collation: code point order, and prefix scans of
``streams`` use its primary key. ``event_position`` is the single-row counter positions are taken from (see
:mod:`ledger.adapters.postgres.store`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from ledger.eventlog.port import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, streams, commands and the position counter",
        """
        CREATE TABLE events (
            position        bigint      NOT NULL,
            event_id        text        COLLATE "C" NOT NULL,
            stream_id       text        COLLATE "C" NOT NULL,
            version         bigint      NOT NULL,
            type            text        NOT NULL,
            schema_version  bigint      NOT NULL,
            occurred_at     timestamptz NOT NULL,
            recorded_at     timestamptz NOT NULL,
            policy_version  bigint,
            idempotency_key text,
            correlation_id  text,
            causation_id    text,
            actor           text        NOT NULL,
            payload         bytea       NOT NULL,
            prev_hash       bytea       NOT NULL,
            hash            bytea       NOT NULL,
            CONSTRAINT events_pkey PRIMARY KEY (position),
            CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
            CONSTRAINT events_event_id_key UNIQUE (event_id),
            CONSTRAINT events_position_check CHECK (position > 0),
            CONSTRAINT events_version_check CHECK (version > 0)
        );

        CREATE TABLE streams (
            stream_id text   COLLATE "C" NOT NULL,
            version   bigint NOT NULL,
            head_hash bytea  NOT NULL,
            CONSTRAINT streams_pkey PRIMARY KEY (stream_id)
        );

        CREATE TABLE commands (
            program_id      text        NOT NULL,
            idempotency_key text        NOT NULL,
            fingerprint     text        NOT NULL,
            response        bytea       NOT NULL,
            recorded_at     timestamptz NOT NULL,
            stream_id       text,
            CONSTRAINT commands_pkey PRIMARY KEY (program_id, idempotency_key)
        );

        CREATE TABLE event_position (
            singleton     boolean NOT NULL DEFAULT true,
            last_position bigint  NOT NULL,
            CONSTRAINT event_position_pkey PRIMARY KEY (singleton),
            CONSTRAINT event_position_singleton CHECK (singleton)
        );
        INSERT INTO event_position (singleton, last_position) VALUES (true, 0);
        """,
    ),
)

_CREATE_SCHEMA_MIGRATIONS: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer     PRIMARY KEY,
    description text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""

MIGRATION_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"ledger.adapters.postgres.migrations.migrate").digest()[:8], "big", signed=True
)
"""The advisory-lock key :func:`migrate` holds (database-wide) while it checks and applies migrations."""


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The highest applied migration; 0 when the schema has none (or no ``schema_migrations`` table)."""
    try:
        row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if row is None or not row[0]:
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    except psycopg.Error as error:
        raise StoreError(f"reading the schema version failed: {error}") from error
    return int(row[0]) if row is not None else 0


def migrate(conn: psycopg.Connection[Any], migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations ``conn``'s schema lacks, all in one transaction; return their versions.

    ``conn`` must not be inside a transaction. Raises :class:`StoreError` if the schema has migrations
    this code does not know (it was migrated by newer code).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise StoreError("migrate needs a connection outside any transaction")
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(_CREATE_SCHEMA_MIGRATIONS)
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            known = {migration.version for migration in migrations}
            if done - known:
                raise StoreError(
                    f"the database has schema versions {sorted(done - known)} this code does not know"
                )
            applied: list[int] = []
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version in done:
                    continue
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (migration.version, migration.description),
                )
                applied.append(migration.version)
    except psycopg.Error as error:
        raise StoreError(f"migrating the schema failed: {error}") from error
    return applied
