"""The facts a lifecycle signal is decided from, read from the read models of either backend (SQLite or
PostgreSQL) in one snapshot: :func:`load_member_facts`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ledger.feed.signals import (
    ACTIVITY_EVENT_TYPES,
    DEFAULT_RULES,
    ExpiringLot,
    MemberFacts,
    SignalRules,
    aware,
)
from projections.codec import from_micros, to_micros

_ACTIVITY_IN: Final = ", ".join(f"'{t}'" for t in ACTIVITY_EVENT_TYPES)


def _facts_sql(p: str, ph: str) -> str:
    """One row per member: id, merged_into, tier, next review, last activity, enrolment (``ph``: placeholder).

    The member's history is aggregated in one pass over the program's activity and enrolment rows (a hash or
    sorted aggregate joined to ``balance``) rather than looked up member by member.
    """
    return f"""
        SELECT b.member_id, b.merged_into, t.tier, t.next_review_at, a.last_activity, a.enrolled
          FROM {p}balance b
          LEFT JOIN {p}tier_state t ON t.program_id = b.program_id AND t.member_id = b.member_id
          LEFT JOIN (SELECT h.member_id,
                            MAX(CASE WHEN h.event_type IN ({_ACTIVITY_IN}) THEN h.occurred_at END) AS last_activity,
                            MIN(CASE WHEN h.event_type IN ('MemberEnrolled', 'MemberImported') THEN h.occurred_at END) AS enrolled
                       FROM {p}history h
                      WHERE h.program_id = {ph} AND h.event_type IN ({_ACTIVITY_IN}, 'MemberEnrolled', 'MemberImported')
                      GROUP BY h.member_id) a ON a.member_id = b.member_id
         WHERE b.program_id = {ph}
         ORDER BY b.member_id
    """


def _lots_sql(p: str, ph: str) -> str:
    return f"""
        SELECT member_id, remaining, expires_at FROM {p}lot
         WHERE program_id = {ph} AND status = 'active' AND remaining > 0
           AND expires_at > {ph} AND expires_at <= {ph}
    """


def _check_prefix(prefix: str) -> None:
    if prefix and not (prefix.replace("_", "").isalnum() and prefix.isascii()):
        raise ValueError(f"table prefix must be ASCII letters, digits and underscores, got {prefix!r}")


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


_Rows = list[tuple[Any, ...]]


def _read_sqlite(conn: sqlite3.Connection, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[_Rows]:
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        return [conn.execute(sql, params).fetchall() for sql, params in statements]
    finally:
        if own:
            conn.execute("COMMIT")


def _read_postgres(conn: Any, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> list[_Rows]:
    import psycopg
    from psycopg.rows import tuple_row

    # One snapshot for all statements: a read-only repeatable-read transaction of our own on an idle
    # autocommit connection (the pool's), otherwise the caller's transaction as it is.
    own = conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if own:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    ok = False
    try:
        out: list[_Rows] = []
        with conn.cursor(row_factory=tuple_row) as cur:
            for sql, params in statements:
                cur.execute(sql.encode(), params)
                out.append(cur.fetchall())
        ok = True
        return out
    finally:
        if own:
            conn.execute("COMMIT" if ok else "ROLLBACK")


def load_member_facts(
    conn: Any,
    program_id: str,
    now: datetime,
    rules: SignalRules = DEFAULT_RULES,
    *,
    prefix: str = "",
) -> list[MemberFacts]:
    """The facts of every member of ``program_id`` from the read models, read in one snapshot.

    ``conn`` is a :class:`sqlite3.Connection` to the store's file (e.g. ``SqliteEventStore.read_connection()``)
    or a psycopg connection to the PostgreSQL database holding the read models (e.g. one lent by
    ``PostgresEventStore.connection()``); the same statements run on both, with the placeholder swapped. The
    statements run in one read transaction unless the caller has one open already. Only lots expiring within
    the rules' window are loaded.
    """
    _check_prefix(prefix)
    aware(now)
    window = (to_micros(now), to_micros(now + rules.expiring_within))
    sqlite = isinstance(conn, sqlite3.Connection)
    ph = "?" if sqlite else "%s"
    statements = [
        (_facts_sql(prefix, ph), (program_id, program_id)),
        (_lots_sql(prefix, ph), (program_id, *window)),
    ]
    members, lot_rows = (_read_sqlite if sqlite else _read_postgres)(conn, statements)
    lots: dict[str, list[ExpiringLot]] = {}
    for member_id, remaining, expires_at in lot_rows:
        lots.setdefault(member_id, []).append(ExpiringLot(int(remaining), from_micros(expires_at)))
    return [
        MemberFacts(
            program_id=program_id,
            member_id=member_id,
            tier=tier,
            next_review_at=_time(next_review_at),
            last_activity_at=_time(last_activity),
            enrolled_at=_time(enrolled),
            lots=tuple(lots.get(member_id, ())),
            merged=merged_into is not None,
        )
        for member_id, merged_into, tier, next_review_at, last_activity, enrolled in members
    ]
