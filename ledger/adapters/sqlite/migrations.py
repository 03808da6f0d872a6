"""The SQLite store's schema as a list of numbered migrations, applied in order when a store is opened.

``schema_version`` records each applied migration once. A migration's statements run in the same
``BEGIN IMMEDIATE`` transaction as its ``schema_version`` row, so concurrent openers apply it exactly once.
Add new migrations at the end with the next number; never edit one that has shipped.

Times are integer microseconds since the Unix epoch, UTC; hashes are 32-byte BLOBs.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from ledger.eventlog.port import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events, streams and commands",
        (
            """
            CREATE TABLE events (
                position        INTEGER PRIMARY KEY,
                event_id        TEXT    NOT NULL UNIQUE,
                stream_id       TEXT    NOT NULL,
                version         INTEGER NOT NULL,
                type            TEXT    NOT NULL,
                schema_version  INTEGER NOT NULL,
                occurred_at     INTEGER NOT NULL,
                recorded_at     INTEGER NOT NULL,
                policy_version  INTEGER,
                idempotency_key TEXT,
                correlation_id  TEXT,
                causation_id    TEXT,
                actor           TEXT    NOT NULL,
                payload         BLOB    NOT NULL,
                prev_hash       BLOB    NOT NULL,
                hash            BLOB    NOT NULL,
                UNIQUE (stream_id, version)
            )
            """,
            """
            CREATE TABLE streams (
                stream_id TEXT    PRIMARY KEY,
                version   INTEGER NOT NULL,
                head_hash BLOB    NOT NULL
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE commands (
                program_id      TEXT    NOT NULL,
                idempotency_key TEXT    NOT NULL,
                fingerprint     TEXT    NOT NULL,
                response        BLOB    NOT NULL,
                recorded_at     INTEGER NOT NULL,
                stream_id       TEXT,
                PRIMARY KEY (program_id, idempotency_key)
            ) WITHOUT ROWID
            """,
        ),
    ),
)

_CREATE_SCHEMA_VERSION = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
)
"""


def migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations ``conn``'s database lacks; return their versions.

    ``conn`` must be in autocommit mode (``isolation_level=None``) and outside a transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE_SCHEMA_VERSION)
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        known = {migration.version for migration in migrations}
        if done - known:
            raise StoreError(
                f"the database has schema versions {sorted(done - known)} this code does not know"
            )
        applied: list[int] = []
        for migration in migrations:
            if migration.version in done:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, time.time_ns() // 1000),
            )
            applied.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied
