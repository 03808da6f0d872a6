"""The read-model tables in SQLite (kept in the event store's file, updated in the append's transaction).

Every member table is keyed by ``(program_id, member_id, ...)``. Times are INTEGER microseconds since the
Unix epoch, UTC (see :mod:`projections.codec`). Column order is the field order of the row classes in
:mod:`projections.rows`.

Table names take a prefix so a rebuild can fill fresh tables (``rb_balance``, ...) while the live ones keep
serving, then :func:`swap_tables` drops the live tables and renames the fresh ones in one transaction.
Secondary indexes are named after the unprefixed table and are created by :func:`create_indexes` (a rebuild
loads its tables without them and creates them during the swap, when the old names are free again).

``history`` is an ordinary rowid table (rows are appended in commit order, which keeps bulk loads cheap) with
a unique index on ``(program_id, member_id, version DESC)`` for a member's newest-first pages; the other
member tables are small-row ``WITHOUT ROWID`` tables clustered on their primary key.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from projections.tables import REBUILD_PREFIX, RETIRED_TABLES, TABLES

_TABLE_DDL: Final = {
    "balance": """
        CREATE TABLE IF NOT EXISTS {p}balance (
            program_id           TEXT    NOT NULL,
            member_id            TEXT    NOT NULL,
            version              INTEGER NOT NULL,
            active               INTEGER NOT NULL,
            pending              INTEGER NOT NULL,
            held                 INTEGER NOT NULL,
            available            INTEGER NOT NULL,
            arrears              INTEGER NOT NULL,
            lifetime_earned      INTEGER NOT NULL,
            lifetime_redeemed    INTEGER NOT NULL,
            lifetime_expired     INTEGER NOT NULL,
            lifetime_clawed_back INTEGER NOT NULL,
            lifetime_returned    INTEGER NOT NULL,
            lifetime_adjusted    INTEGER NOT NULL,
            merged_into          TEXT,
            PRIMARY KEY (program_id, member_id)
        ) WITHOUT ROWID
    """,
    "lot": """
        CREATE TABLE IF NOT EXISTS {p}lot (
            program_id  TEXT    NOT NULL,
            member_id   TEXT    NOT NULL,
            lot_id      TEXT    NOT NULL,
            source      TEXT    NOT NULL,
            amount      INTEGER NOT NULL,
            remaining   INTEGER NOT NULL,
            held        INTEGER NOT NULL,
            occurred_at INTEGER NOT NULL,
            active_at   INTEGER NOT NULL,
            expires_at  INTEGER NOT NULL,
            order_id    TEXT,
            status      TEXT    NOT NULL CHECK (status IN ('pending', 'active', 'spent', 'expired')),
            seq         INTEGER,
            PRIMARY KEY (program_id, member_id, lot_id)
        ) WITHOUT ROWID
    """,
    "tier_state": """
        CREATE TABLE IF NOT EXISTS {p}tier_state (
            program_id       TEXT    NOT NULL,
            member_id        TEXT    NOT NULL,
            tier             TEXT    NOT NULL,
            tier_since       INTEGER,
            next_review_at   INTEGER,
            downgrade_at     INTEGER,
            downgrade_target TEXT,
            override_tier    TEXT,
            override_kind    TEXT,
            override_ends_at INTEGER,
            override_reason  TEXT,
            PRIMARY KEY (program_id, member_id)
        ) WITHOUT ROWID
    """,
    "history": """
        CREATE TABLE IF NOT EXISTS {p}history (
            program_id           TEXT    NOT NULL,
            member_id            TEXT    NOT NULL,
            version              INTEGER NOT NULL,
            position             INTEGER NOT NULL,
            event_type           TEXT    NOT NULL,
            occurred_at          INTEGER NOT NULL,
            recorded_at          INTEGER NOT NULL,
            points_delta_active  INTEGER NOT NULL,
            points_delta_pending INTEGER NOT NULL,
            active_after         INTEGER NOT NULL,
            pending_after        INTEGER NOT NULL,
            held_after           INTEGER NOT NULL,
            arrears_after        INTEGER NOT NULL,
            available_after      INTEGER NOT NULL,
            policy_version       INTEGER,
            summary              TEXT    NOT NULL,
            actor_json           TEXT    NOT NULL,
            idempotency_key      TEXT,
            event_id             TEXT,
            points_delta         INTEGER NOT NULL DEFAULT 0,
            growth_delta         INTEGER NOT NULL DEFAULT 0,
            order_id             TEXT,
            tier_after           TEXT
        )
    """,
    "standing": """
        CREATE TABLE IF NOT EXISTS {p}standing (
            program_id TEXT    NOT NULL,
            member_id  TEXT    NOT NULL,
            version    INTEGER NOT NULL,
            document   TEXT    NOT NULL,
            PRIMARY KEY (program_id, member_id)
        ) WITHOUT ROWID
    """,
    "identity": """
        CREATE TABLE IF NOT EXISTS {p}identity (
            program_id TEXT NOT NULL,
            identity   TEXT NOT NULL,
            member_id  TEXT NOT NULL,
            PRIMARY KEY (program_id, identity)
        ) WITHOUT ROWID
    """,
    "due": """
        CREATE TABLE IF NOT EXISTS {p}due (
            program_id TEXT NOT NULL,
            member_id  TEXT NOT NULL,
            due_at     INTEGER,
            PRIMARY KEY (program_id, member_id)
        ) WITHOUT ROWID
    """,
    "projection_checkpoint": """
        CREATE TABLE IF NOT EXISTS {p}projection_checkpoint (
            name     TEXT    PRIMARY KEY,
            position INTEGER NOT NULL
        ) WITHOUT ROWID
    """,
}

_INDEX_DDL: Final = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}history_by_member ON {p}history (program_id, member_id, version DESC)",
    "CREATE INDEX IF NOT EXISTS {p}identity_by_member ON {p}identity (program_id, member_id)",
    "CREATE INDEX IF NOT EXISTS {p}due_by_time ON {p}due (program_id, due_at)",
)

_INDEX_NAMES: Final = ("history_by_member", "identity_by_member", "due_by_time")


def _check_prefix(prefix: str) -> None:
    if prefix and not (prefix.replace("_", "").isalnum() and prefix.isascii() and not prefix[0].isdigit()):
        raise ValueError(f"table prefix must be ASCII letters, digits and underscores, got {prefix!r}")


def table_statements(prefix: str = "") -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every read-model table, named ``prefix + table``."""
    _check_prefix(prefix)
    return [_TABLE_DDL[name].format(p=prefix) for name in TABLES]


def index_statements(prefix: str = "") -> list[str]:
    """``CREATE INDEX IF NOT EXISTS`` for the secondary indexes of the ``prefix`` tables."""
    _check_prefix(prefix)
    return [ddl.format(p=prefix) for ddl in _INDEX_DDL]


def create_tables(conn: sqlite3.Connection, prefix: str = "", *, indexes: bool = True) -> None:
    """Create the ``prefix`` tables (and their indexes unless ``indexes`` is false); existing ones are kept,
    retired ones (:data:`~projections.tables.RETIRED_TABLES`, from earlier releases) dropped.

    Runs on ``conn`` as is: inside the caller's transaction if one is open.
    """
    for statement in table_statements(prefix):
        conn.execute(statement)
    for name in RETIRED_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {prefix}{name}")
    add_missing_columns(conn, prefix)
    if indexes:
        create_indexes(conn, prefix)


#: Columns added after the tables' first release, with their declarations: tables made before get them
#: (``NULL`` event ids and lot ``seq`` mark the rows written before, which ``ledger rebuild-projections`` fills in).
ADDED_COLUMNS: Final = (
    ("history", "event_id", "TEXT"),
    ("history", "points_delta", "INTEGER NOT NULL DEFAULT 0"),
    ("history", "growth_delta", "INTEGER NOT NULL DEFAULT 0"),
    ("history", "order_id", "TEXT"),
    ("history", "tier_after", "TEXT"),
    ("lot", "seq", "INTEGER"),
)


def add_missing_columns(conn: sqlite3.Connection, prefix: str = "") -> None:
    """Add the columns of :data:`ADDED_COLUMNS` that the ``prefix`` tables lack."""
    _check_prefix(prefix)
    for table, name, declaration in ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({prefix}{table})")}
        if have and name not in have:
            conn.execute(f"ALTER TABLE {prefix}{table} ADD COLUMN {name} {declaration}")


def create_indexes(conn: sqlite3.Connection, prefix: str = "") -> None:
    for statement in index_statements(prefix):
        conn.execute(statement)


def drop_tables(conn: sqlite3.Connection, prefix: str) -> None:
    """Drop the ``prefix`` tables, retired ones included (their indexes go with them), if they exist."""
    _check_prefix(prefix)
    for name in (*TABLES, *RETIRED_TABLES):
        conn.execute(f"DROP TABLE IF EXISTS {prefix}{name}")


def swap_tables(conn: sqlite3.Connection, fresh_prefix: str = REBUILD_PREFIX, live_prefix: str = "") -> None:
    """Replace the ``live_prefix`` tables by the ``fresh_prefix`` ones: drop, rename, index.

    Call it inside a transaction (``BEGIN IMMEDIATE``): readers keep seeing the old tables until the commit and
    a failure leaves everything as it was.
    """
    if fresh_prefix == live_prefix:
        raise ValueError("the fresh and live prefixes must differ")
    if not conn.in_transaction:
        raise RuntimeError("swap_tables must run inside a transaction")
    drop_tables(conn, live_prefix)
    for name in _INDEX_NAMES:
        conn.execute(f"DROP INDEX IF EXISTS {fresh_prefix}{name}")
    for name in TABLES:
        conn.execute(f"ALTER TABLE {fresh_prefix}{name} RENAME TO {live_prefix}{name}")
    create_indexes(conn, live_prefix)
