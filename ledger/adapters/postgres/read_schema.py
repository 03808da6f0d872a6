"""The read-model tables in PostgreSQL: the same tables, columns and encoding as :mod:`ledger.adapters.sqlite.read_schema`.

Times are BIGINT microseconds since the Unix epoch, UTC, exactly as in SQLite, so the row codecs of
:mod:`projections.codec` serve both databases unchanged. Points, money, versions and positions are
BIGINT (SQLite's INTEGER is 64-bit). Text columns are ``COLLATE "C"`` so ordering and keyset paging compare
bytes like SQLite does, whatever the database's default collation.

Table names take a prefix so a rebuild can fill fresh tables (``rb_balance``, ...) while the live ones keep
serving; :func:`swap_tables` then drops the live tables and renames the fresh ones (and their constraints and
indexes) in the caller's transaction. Every constraint and index is named after its prefixed table, so the
fresh tables' names never collide with the live ones'. Secondary indexes (including the unique index on
``history`` that its upserts rely on) are created by :func:`create_indexes`; a rebuild loads its tables
without them and builds them in bulk before the switch.

Runs on the connection's ``search_path``: a per-test schema (``options='-c search_path=...'``) isolates a
whole set of tables.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import sql

from projections.tables import REBUILD_PREFIX, RETIRED_TABLES, TABLES

__all__ = [
    "REBUILD_PREFIX",
    "TABLES",
    "create_indexes",
    "create_tables",
    "drop_tables",
    "index_statements",
    "swap_tables",
    "table_exists",
    "table_statements",
]

_T: Final = 'TEXT COLLATE "C"'

_TABLE_DDL: Final = {
    "balance": f"""
        CREATE TABLE IF NOT EXISTS {{p}}balance (
            program_id           {_T} NOT NULL,
            member_id            {_T} NOT NULL,
            version              BIGINT NOT NULL,
            active               BIGINT NOT NULL,
            pending              BIGINT NOT NULL,
            held                 BIGINT NOT NULL,
            available            BIGINT NOT NULL,
            arrears              BIGINT NOT NULL,
            lifetime_earned      BIGINT NOT NULL,
            lifetime_redeemed    BIGINT NOT NULL,
            lifetime_expired     BIGINT NOT NULL,
            lifetime_clawed_back BIGINT NOT NULL,
            lifetime_returned    BIGINT NOT NULL,
            lifetime_adjusted    BIGINT NOT NULL,
            merged_into          {_T},
            CONSTRAINT {{p}}balance_pkey PRIMARY KEY (program_id, member_id)
        )
    """,
    "lot": f"""
        CREATE TABLE IF NOT EXISTS {{p}}lot (
            program_id  {_T} NOT NULL,
            member_id   {_T} NOT NULL,
            lot_id      {_T} NOT NULL,
            source      {_T} NOT NULL,
            amount      BIGINT NOT NULL,
            remaining   BIGINT NOT NULL,
            held        BIGINT NOT NULL,
            occurred_at BIGINT NOT NULL,
            active_at   BIGINT NOT NULL,
            expires_at  BIGINT NOT NULL,
            order_id    {_T},
            status      {_T} NOT NULL
                CONSTRAINT {{p}}lot_status_check CHECK (status IN ('pending', 'active', 'spent', 'expired')),
            seq         BIGINT,
            CONSTRAINT {{p}}lot_pkey PRIMARY KEY (program_id, member_id, lot_id)
        )
    """,
    "tier_state": f"""
        CREATE TABLE IF NOT EXISTS {{p}}tier_state (
            program_id       {_T} NOT NULL,
            member_id        {_T} NOT NULL,
            tier             {_T} NOT NULL,
            tier_since       BIGINT,
            next_review_at   BIGINT,
            downgrade_at     BIGINT,
            downgrade_target {_T},
            override_tier    {_T},
            override_kind    {_T},
            override_ends_at BIGINT,
            override_reason  {_T},
            CONSTRAINT {{p}}tier_state_pkey PRIMARY KEY (program_id, member_id)
        )
    """,
    "history": f"""
        CREATE TABLE IF NOT EXISTS {{p}}history (
            program_id           {_T} NOT NULL,
            member_id            {_T} NOT NULL,
            version              BIGINT NOT NULL,
            position             BIGINT NOT NULL,
            event_type           {_T} NOT NULL,
            occurred_at          BIGINT NOT NULL,
            recorded_at          BIGINT NOT NULL,
            points_delta_active  BIGINT NOT NULL,
            points_delta_pending BIGINT NOT NULL,
            active_after         BIGINT NOT NULL,
            pending_after        BIGINT NOT NULL,
            held_after           BIGINT NOT NULL,
            arrears_after        BIGINT NOT NULL,
            available_after      BIGINT NOT NULL,
            policy_version       BIGINT,
            summary              TEXT   NOT NULL,
            actor_json           TEXT   NOT NULL,
            idempotency_key      TEXT,
            event_id             TEXT,
            points_delta         BIGINT NOT NULL DEFAULT 0,
            growth_delta         BIGINT NOT NULL DEFAULT 0,
            order_id             TEXT,
            tier_after           TEXT
        )
    """,
    "standing": f"""
        CREATE TABLE IF NOT EXISTS {{p}}standing (
            program_id {_T} NOT NULL,
            member_id  {_T} NOT NULL,
            version    BIGINT NOT NULL,
            document   TEXT   NOT NULL,
            CONSTRAINT {{p}}standing_pkey PRIMARY KEY (program_id, member_id)
        )
    """,
    "identity": f"""
        CREATE TABLE IF NOT EXISTS {{p}}identity (
            program_id {_T} NOT NULL,
            identity   {_T} NOT NULL,
            member_id  {_T} NOT NULL,
            CONSTRAINT {{p}}identity_pkey PRIMARY KEY (program_id, identity)
        )
    """,
    "due": f"""
        CREATE TABLE IF NOT EXISTS {{p}}due (
            program_id {_T} NOT NULL,
            member_id  {_T} NOT NULL,
            due_at     BIGINT,
            CONSTRAINT {{p}}due_pkey PRIMARY KEY (program_id, member_id)
        )
    """,
    "projection_checkpoint": f"""
        CREATE TABLE IF NOT EXISTS {{p}}projection_checkpoint (
            name     {_T} NOT NULL,
            position BIGINT NOT NULL,
            CONSTRAINT {{p}}projection_checkpoint_pkey PRIMARY KEY (name)
        )
    """,
}

_CONSTRAINTS: Final = {
    "balance": ("balance_pkey",),
    "lot": ("lot_pkey", "lot_status_check"),
    "tier_state": ("tier_state_pkey",),
    "history": (),
    "standing": ("standing_pkey",),
    "identity": ("identity_pkey",),
    "due": ("due_pkey",),
    "projection_checkpoint": ("projection_checkpoint_pkey",),
}
"""The named constraints of each table (unprefixed), renamed with the table by :func:`swap_tables`."""

_INDEX_DDL: Final = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {p}history_by_member ON {p}history (program_id, member_id, version DESC)",
    "CREATE INDEX IF NOT EXISTS {p}identity_by_member ON {p}identity (program_id, member_id)",
    "CREATE INDEX IF NOT EXISTS {p}due_by_time ON {p}due (program_id, due_at)",
    "CREATE INDEX IF NOT EXISTS {p}lot_by_expiry ON {p}lot (program_id, expires_at) "
    "WHERE status IN ('pending', 'active') AND remaining > 0",
)

_INDEX_NAMES: Final = ("history_by_member", "identity_by_member", "due_by_time", "lot_by_expiry")


def _check_prefix(prefix: str) -> None:
    if prefix and not (prefix.replace("_", "").isalnum() and prefix.isascii() and not prefix[0].isdigit()):
        raise ValueError(f"table prefix must be ASCII letters, digits and underscores, got {prefix!r}")
    if prefix != prefix.lower():
        raise ValueError(f"table prefix must be lower case (PostgreSQL folds names), got {prefix!r}")


def _run(conn: psycopg.Connection[Any], statement: str) -> None:
    conn.execute(sql.SQL(statement))


def table_statements(prefix: str = "") -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every read-model table, named ``prefix + table``."""
    _check_prefix(prefix)
    return [_TABLE_DDL[name].format(p=prefix) for name in TABLES]


def index_statements(prefix: str = "") -> list[str]:
    """``CREATE [UNIQUE] INDEX IF NOT EXISTS`` for the secondary indexes of the ``prefix`` tables."""
    _check_prefix(prefix)
    return [ddl.format(p=prefix) for ddl in _INDEX_DDL]


def create_tables(conn: psycopg.Connection[Any], prefix: str = "", *, indexes: bool = True) -> None:
    """Create the ``prefix`` tables (and their indexes unless ``indexes`` is false); existing ones are kept.

    Runs on ``conn`` as it is (inside the caller's transaction if one is open; never commits). Concurrent
    first-time creation from several replicas can race on the catalog; run it once at start-up (see
    :meth:`ledger.adapters.postgres.projector.PgProjector.create_schema`, which serialises it with an advisory lock).
    """
    for statement in table_statements(prefix):
        _run(conn, statement)
    for name in RETIRED_TABLES:  # tables of earlier releases that nothing reads (see projections.tables)
        _run(conn, f"DROP TABLE IF EXISTS {prefix}{name}")
    for table, name, declaration in ADDED_COLUMNS:
        # Look first: an ALTER TABLE takes an exclusive lock even when the column is there already.
        found = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s AND column_name = %s",
            (prefix + table, name),
        ).fetchone()
        if found is None:
            _run(conn, f"ALTER TABLE {prefix}{table} ADD COLUMN IF NOT EXISTS {name} {declaration}")
    if indexes:
        create_indexes(conn, prefix)


#: Columns added after the tables' first release: tables made before get them (``NULL`` event ids and lot
#: ``seq`` mark the rows written before, which ``ledger rebuild-projections`` fills in).
ADDED_COLUMNS: Final = (
    ("history", "event_id", "TEXT"),
    ("history", "points_delta", "BIGINT NOT NULL DEFAULT 0"),
    ("history", "growth_delta", "BIGINT NOT NULL DEFAULT 0"),
    ("history", "order_id", "TEXT"),
    ("history", "tier_after", "TEXT"),
    ("lot", "seq", "BIGINT"),
)


def create_indexes(conn: psycopg.Connection[Any], prefix: str = "") -> None:
    for statement in index_statements(prefix):
        _run(conn, statement)


def drop_tables(conn: psycopg.Connection[Any], prefix: str) -> None:
    """Drop the ``prefix`` tables, retired ones included (their indexes and constraints go with them), if they
    exist."""
    _check_prefix(prefix)
    for name in (*TABLES, *RETIRED_TABLES):
        _run(conn, f"DROP TABLE IF EXISTS {prefix}{name}")


def table_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether ``name`` resolves to a table on the connection's search path."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def swap_tables(
    conn: psycopg.Connection[Any], fresh_prefix: str = REBUILD_PREFIX, live_prefix: str = ""
) -> None:
    """Replace the ``live_prefix`` tables by the ``fresh_prefix`` ones: drop, rename (tables, constraints,
    indexes), and create any index the fresh tables lack.

    Call it inside a transaction: readers keep seeing the old tables until the commit (DROP waits for the
    queries running on them) and a failure leaves everything as it was. Statements waiting for a lock on a
    dropped table look its name up again once they get it, so they continue on the new table.
    """
    _check_prefix(fresh_prefix)
    _check_prefix(live_prefix)
    if fresh_prefix == live_prefix:
        raise ValueError("the fresh and live prefixes must differ")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise RuntimeError("swap_tables must run inside a transaction")
    drop_tables(conn, live_prefix)
    for name in TABLES:
        _run(conn, f"ALTER TABLE {fresh_prefix}{name} RENAME TO {live_prefix}{name}")
        for constraint in _CONSTRAINTS[name]:
            _run(
                conn,
                f"ALTER TABLE {live_prefix}{name} RENAME CONSTRAINT "
                f"{fresh_prefix}{constraint} TO {live_prefix}{constraint}",
            )
    for index in _INDEX_NAMES:
        _run(conn, f"ALTER INDEX IF EXISTS {fresh_prefix}{index} RENAME TO {live_prefix}{index}")
    create_indexes(conn, live_prefix)
