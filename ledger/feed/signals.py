"""Lifecycle signals: points about to expire, a tier review ahead, a member gone quiet for 30 or 90 days.

A periodic scan reads a few facts per member from the read models (:func:`load_member_facts`), decides which
signals are due (:func:`due_signals`, a pure function of the facts and ``now``) and records each one as an event
of the per-program stream ``signal-{program_id}`` in the event log (:func:`raise_signals`). The feed relay then
publishes them in position order with every other event, so signals share the ledger events' delivery
guarantees (ordered, checkpointed, at least once).

Every occurrence has a deterministic id, ``signal:{program_id}:{member_id}:{KIND}:{reference time}``, used as the
event id and as the idempotency key of a command record written in the same transaction: raising a signal a
second time (another scan, another replica) writes nothing. The command records are kept under the program id
``signal:{program_id}`` (:func:`signal_command_program`), which no client can use, so they never share a key
space with client idempotency keys. The reference time is the earliest expiry
(POINTS_EXPIRING), the review time (TIER_REVIEW_AHEAD) or the last activity (INACTIVE_*), so a new occurrence (a
later expiry, the next review, a new stretch of inactivity) gets a new id.

Rules (defaults of :class:`SignalRules`):

- ``POINTS_EXPIRING``: the member has active lots with remaining points expiring in ``(now, now + 30 days]``;
  the signal carries their remaining points and the earliest expiry.
- ``TIER_REVIEW_AHEAD``: the next tier review is in ``(now, now + 14 days]``. The reference policy has no review
  notice period of its own (``tiers.grace_days`` is the grace after a downgrade notice, not a notice before the
  review), so the notice period is :attr:`SignalRules.review_notice`.
- ``INACTIVE_30_DAYS``: no member activity for at least 30 days and less than 90; ``INACTIVE_90_DAYS``: for at
  least 90. Activity is what the domain counts (``MemberState.last_activity_at``): a purchase, a behaviour award,
  a committed redemption; a member never active counts from the enrolment (as the win-back rule does). A member
  found at 95 days without having been signalled at 30 gets INACTIVE_90_DAYS only.
- Merged-away members get no signals.

Facts are read from the read models of either backend (:func:`load_member_facts` takes a SQLite or a psycopg
connection) and :func:`scan` drives the whole thing for every program, each at its own ``now`` (a test-clock
program has a time of its own).

Time is an input (``now``); nothing here reads the wall clock.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from ledger.domain import streams
from ledger.domain.streams import signal_stream
from ledger.eventlog.chain import canonical_json, format_time
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    EventStore,
    NewEvent,
    StreamAppend,
)
from projections.codec import from_micros, to_micros

SIGNAL_EVENT_TYPE: Final = "LifecycleSignalRaised"
"""The event type of a recorded signal."""

SIGNAL_SCHEMA_VERSION: Final = 1
"""The payload schema version of :data:`SIGNAL_EVENT_TYPE`."""


SIGNAL_COMMAND_PREFIX: Final = "signal:"
"""Prefix of the program id under which signal command records are kept (outside the client program ids)."""

ACTIVITY_EVENT_TYPES: Final = ("PurchaseRecorded", "PointsAwarded", "HoldCommitted")
"""The member events that count as activity (those that move ``MemberState.last_activity_at``)."""

_DAY: Final = timedelta(days=1)
_CHUNK: Final = 200
"""Signals appended per transaction."""
_LOOKUP_CHUNK: Final = 1000
"""Signals looked up per :meth:`EventStore.find_commands` call."""


def signal_command_program(program_id: str) -> str:
    """The program id the signals' command records are kept under: ``signal:{program_id}``.

    Client program ids match ``[a-z][a-z0-9_]{0,63}`` and never contain ``:``, so a signal's idempotency key
    can never collide with (or answer for) a key a client chose, whatever that key looks like.
    """
    return f"{SIGNAL_COMMAND_PREFIX}{program_id}"


class SignalKind(StrEnum):
    POINTS_EXPIRING = "POINTS_EXPIRING"
    TIER_REVIEW_AHEAD = "TIER_REVIEW_AHEAD"
    INACTIVE_30_DAYS = "INACTIVE_30_DAYS"
    INACTIVE_90_DAYS = "INACTIVE_90_DAYS"


@dataclass(frozen=True, slots=True)
class ExpiringLot:
    """An active lot's remaining points and expiry (exclusive end)."""

    points: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """What the signal rules need to know of one member (times timezone-aware)."""

    program_id: str
    member_id: str
    tier: str | None = None
    next_review_at: datetime | None = None
    last_activity_at: datetime | None = None
    enrolled_at: datetime | None = None
    lots: tuple[ExpiringLot, ...] = ()
    """Active lots with remaining points (those expiring later than the window may be left out)."""
    merged: bool = False


@dataclass(frozen=True, slots=True)
class SignalRules:
    expiring_within: timedelta = timedelta(days=30)
    review_notice: timedelta = timedelta(days=14)
    inactive_short: timedelta = timedelta(days=30)
    inactive_long: timedelta = timedelta(days=90)


DEFAULT_RULES: Final = SignalRules()


@dataclass(frozen=True, slots=True)
class Signal:
    """One due occurrence of a lifecycle signal."""

    kind: SignalKind
    program_id: str
    member_id: str
    reference_at: datetime
    points: int = 0
    expires_at: datetime | None = None
    next_review_at: datetime | None = None
    tier: str | None = None
    last_activity_at: datetime | None = None
    inactive_days: int = 0

    @property
    def signal_id(self) -> str:
        return f"signal:{self.program_id}:{self.member_id}:{self.kind}:{format_time(self.reference_at)}"

    def payload(self) -> dict[str, Any]:
        """The recorded payload (what the feed's ``payload_json`` carries for a signal)."""

        def t(value: datetime | None) -> str | None:
            return None if value is None else format_time(value)

        return {
            "kind": str(self.kind),
            "signal_id": self.signal_id,
            "member_id": self.member_id,
            "reference_at": t(self.reference_at),
            "points": self.points,
            "expires_at": t(self.expires_at),
            "next_review_at": t(self.next_review_at),
            "tier": self.tier,
            "last_activity_at": t(self.last_activity_at),
            "inactive_days": self.inactive_days,
        }


def _aware(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: times must be timezone-aware")
    return value


def due_signals(facts: MemberFacts, now: datetime, rules: SignalRules = DEFAULT_RULES) -> list[Signal]:
    """The signals due for ``facts`` at ``now`` (at most one of each kind; none for a merged member)."""
    _aware(now)
    if facts.merged:
        return []
    found: list[Signal] = []
    program_id, member_id = facts.program_id, facts.member_id

    horizon = now + rules.expiring_within
    expiring = [lot for lot in facts.lots if lot.points > 0 and now < _aware(lot.expires_at) <= horizon]
    if expiring:
        earliest = min(lot.expires_at for lot in expiring)
        found.append(
            Signal(
                kind=SignalKind.POINTS_EXPIRING,
                reference_at=earliest,
                points=sum(lot.points for lot in expiring),
                expires_at=earliest,
                program_id=program_id,
                member_id=member_id,
            )
        )

    review = facts.next_review_at
    if review is not None and now < _aware(review) <= now + rules.review_notice:
        found.append(
            Signal(
                kind=SignalKind.TIER_REVIEW_AHEAD,
                reference_at=review,
                next_review_at=review,
                tier=facts.tier,
                program_id=program_id,
                member_id=member_id,
            )
        )

    last = facts.last_activity_at or facts.enrolled_at
    if last is not None:
        quiet = now - _aware(last)
        kind: SignalKind | None = None
        if quiet >= rules.inactive_long:
            kind = SignalKind.INACTIVE_90_DAYS
        elif quiet >= rules.inactive_short:
            kind = SignalKind.INACTIVE_30_DAYS
        if kind is not None:
            found.append(
                Signal(
                    kind=kind,
                    reference_at=last,
                    last_activity_at=last,
                    inactive_days=quiet // _DAY,
                    program_id=program_id,
                    member_id=member_id,
                )
            )
    return found


def signal_event(signal: Signal, now: datetime) -> NewEvent:
    """The event recording ``signal`` (id = idempotency key = the signal id)."""
    return NewEvent(
        event_id=signal.signal_id,
        type=SIGNAL_EVENT_TYPE,
        schema_version=SIGNAL_SCHEMA_VERSION,
        occurred_at=now,
        recorded_at=now,
        policy_version=None,
        idempotency_key=signal.signal_id,
        correlation_id=None,
        causation_id=None,
        actor={"channel": "system"},
        payload=canonical_json(signal.payload()),
    )


def _batch(signals: Sequence[Signal], now: datetime) -> AppendBatch:
    by_program: dict[str, list[NewEvent]] = {}
    commands: list[CommandRecord] = []
    for signal in signals:
        event = signal_event(signal, now)
        by_program.setdefault(signal.program_id, []).append(event)
        commands.append(
            CommandRecord(
                program_id=signal_command_program(signal.program_id),
                idempotency_key=signal.signal_id,
                fingerprint=hashlib.sha256(event.payload).hexdigest(),
                response=event.event_id.encode(),
                recorded_at=now,
                stream_id=signal_stream(signal.program_id),
            )
        )
    appends = [StreamAppend(signal_stream(p), ANY, events) for p, events in by_program.items()]
    return AppendBatch(appends, commands)


def _due(facts: Iterable[MemberFacts], now: datetime, rules: SignalRules) -> Iterator[Signal]:
    """Every due signal of ``facts``, each occurrence once."""
    seen: set[str] = set()
    for member in facts:
        for signal in due_signals(member, now, rules):
            if signal.signal_id not in seen:
                seen.add(signal.signal_id)
                yield signal


def _chunked(signals: Iterable[Signal], size: int) -> Iterator[list[Signal]]:
    chunk: list[Signal] = []
    for signal in signals:
        chunk.append(signal)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _command_key(signal: Signal) -> tuple[str, str]:
    return (signal_command_program(signal.program_id), signal.signal_id)


def raise_signals(
    store: EventStore[Any], facts: Iterable[MemberFacts], now: datetime, rules: SignalRules = DEFAULT_RULES
) -> int:
    """Record every due signal not raised before; return how many were written (0 on a repeat).

    Signals are checked against the command records in batches (:meth:`EventStore.find_commands`, one call
    per 1,000 signals) and the missing ones appended 200 to a transaction.
    """
    _aware(now)
    written = 0
    for looked_up in _chunked(_due(facts, now, rules), _LOOKUP_CHUNK):
        keys = [_command_key(s) for s in looked_up]
        known = store.find_commands(keys)
        missing = (s for s, key in zip(looked_up, keys, strict=True) if key not in known)
        for pending in _chunked(missing, _CHUNK):
            try:
                store.append(_batch(pending, now))
                written += len(pending)
            except (DuplicateCommand, DuplicateEventId):
                # Raised concurrently by someone else: write the others one by one.
                for signal in pending:
                    try:
                        store.append(_batch([signal], now))
                        written += 1
                    except (DuplicateCommand, DuplicateEventId):
                        pass
    return written


# -- facts from the read models (SQLite or PostgreSQL) -------------------------------------------------------

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
    _aware(now)
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


def program_ids_of(store: EventStore[Any]) -> list[str]:
    """Every program of the store (from its ``program-*`` streams)."""
    return streams.program_ids_of(store.list_streams(streams.PROGRAM_PREFIX))


def scan(
    store: EventStore[Any],
    connection_factory: Callable[[], AbstractContextManager[Any]],
    now_of: Callable[[str], datetime],
    rules: SignalRules = DEFAULT_RULES,
    *,
    program_ids: Iterable[str] | None = None,
    prefix: str = "",
) -> int:
    """Raise the due signals of every program (or of ``program_ids``); return how many were written.

    ``connection_factory()`` is a context manager yielding a read-model connection (SQLite or psycopg; e.g.
    ``Backend.read_connection`` of :mod:`ledger.bootstrap`), checked out once per program. ``now_of(program_id)``
    is the program's own now (``LedgerApp.now``: a test-clock program's time, the wall clock otherwise).
    """
    written = 0
    for program_id in program_ids_of(store) if program_ids is None else program_ids:
        now = now_of(program_id)
        with connection_factory() as conn:
            facts = load_member_facts(conn, program_id, now, rules, prefix=prefix)
        written += raise_signals(store, facts, now, rules)
    return written
