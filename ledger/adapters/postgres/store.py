"""The production event store: PostgreSQL through a ``psycopg_pool.ConnectionPool``.

Several replicas (processes) may share one database; everything below holds across processes.

**Global order without gaps for readers.** ``read_all`` promises that a reader that has passed position N
never later finds a committed event below N. A plain sequence breaks that: transaction A takes 5, B takes 6
and commits first, a reader reads 6 and moves on, then A commits 5 behind it. Here positions come instead
from one counter row (``event_position``) that the append updates inside its transaction, so the row lock
serialises the part of every appending transaction from taking its positions to committing: B cannot take
positions until A has committed or rolled back, and B's ``UPDATE`` then reads A's committed value
(READ COMMITTED re-reads the latest row version after the wait). PostgreSQL makes a transaction visible
before releasing its locks, so by the time B holds the counter A is visible to every new snapshot: commits
happen in position order and any snapshot that sees position p sees every position below it. A rolled-back
append releases its positions with the counter update, so positions also have no holes at all, and one
append's positions are consecutive.

The price is that appends serialise from the counter to the commit. To keep that window short the counter
is taken as late as possible: the append first records its commands, locks its stream heads, checks the
expected versions and computes the hash chain (all of which run concurrently with other appends), and
only then takes the counter, inserts the events, moves the stream heads, runs the ``in_transaction`` hook
(which must see final positions) and commits. Appends that write no event (version checks, commands
only) never touch the counter. The alternative, a sequence plus readers that stop below the oldest
in-flight transaction (``pg_snapshot_xmin`` and ``xid8`` columns), lets writers overlap but makes every
reader wait behind the slowest writer, leaves holes after rollbacks and needs the xid columns kept forever.

**Optimistic concurrency.** Stream heads live in ``streams``. An append inserts a placeholder row (version
0) for each stream it extends that does not exist yet (``ON CONFLICT DO NOTHING``, which waits for a
concurrent creator to finish), then locks the heads of all its streams ``FOR UPDATE`` in stream-id order,
so two replicas appending to one stream serialise there and the second sees the first's committed head and
fails with :class:`~ledger.eventlog.port.WrongExpectedVersion`, having written nothing. Placeholders exist
only inside the appending transaction: a committed stream row always has version >= 1. Command keys are
claimed before the stream locks, and each kind of lock is taken in a fixed order, so appends cannot deadlock
among themselves. (A pure version check of a stream that does not exist yet is not protected against a
concurrent creation of that stream.)

**Round trips.** An append is a fixed number of statements whatever the size of the batch: each table is
written with one ``INSERT ... SELECT FROM unnest(arrays)`` whose arrays are sent in binary (much cheaper to
encode than text arrays); duplicates are detected with
``ON CONFLICT DO NOTHING RETURNING`` rather than by parsing error messages. Reads of one stream, of the
global order and of one command are one query each.

The ``in_transaction`` hook gets the :class:`psycopg.Connection` inside the open transaction: read models in
the same database are written there, atomically with the events. It may run any SQL but must not commit
or roll back. :meth:`PostgresEventStore.connection` lends a pooled connection in autocommit mode for
read-model queries.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ledger.adapters.postgres.migrations import migrate as migrate_schema
from ledger.eventlog.chain import GENESIS, encode_canonical
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import StreamHead, check_batch, prefix_upper_bound, stage_batch, stream_ids

Connection = psycopg.Connection[Any]

CONNECTION_WAIT: Final = 2.0
"""Seconds a statement waits for a pooled connection before the store answers that it is unavailable."""
CONNECT_TIMEOUT: Final = 3
"""Seconds to open one connection (libpq ``connect_timeout``)."""


EVENT_COLUMNS: Final = (
    "position, event_id, stream_id, version, type, schema_version, occurred_at, recorded_at, policy_version, "
    "idempotency_key, correlation_id, causation_id, actor, payload, prev_hash, hash"
)
COMMAND_COLUMNS: Final = "program_id, idempotency_key, fingerprint, response, recorded_at, stream_id"

_INSERT_COMMANDS: Final = (
    f"INSERT INTO commands ({COMMAND_COLUMNS}) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::timestamptz[], %b::text[]) "
    "ON CONFLICT (program_id, idempotency_key) DO NOTHING RETURNING program_id, idempotency_key"
)
_CREATE_STREAMS: Final = (
    "INSERT INTO streams (stream_id, version, head_hash) "
    "SELECT s.stream_id, 0, %s FROM unnest(%b::text[]) WITH ORDINALITY AS s(stream_id, n) ORDER BY s.n "
    "ON CONFLICT (stream_id) DO NOTHING"
)
_LOCK_HEADS: Final = (
    "SELECT stream_id, version, head_hash FROM streams WHERE stream_id = ANY(%b::text[]) "
    "ORDER BY stream_id FOR UPDATE"
)
_TAKE_POSITIONS: Final = (
    "UPDATE event_position SET last_position = last_position + %s WHERE singleton RETURNING last_position"
)
_INSERT_EVENTS: Final = (
    f"INSERT INTO events ({EVENT_COLUMNS}) "
    "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::bigint[], "
    "%b::timestamptz[], %b::timestamptz[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::bytea[], %b::bytea[], %b::bytea[]) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_MOVE_HEADS: Final = (
    "UPDATE streams SET version = h.version, head_hash = h.head_hash "
    "FROM unnest(%b::text[], %b::bigint[], %b::bytea[]) AS h(stream_id, version, head_hash) "
    "WHERE streams.stream_id = h.stream_id"
)
_READ_STREAM: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s ORDER BY version LIMIT %s"
)
_FIND_COMMANDS: Final = (
    f"SELECT {COMMAND_COLUMNS} FROM commands WHERE (program_id, idempotency_key) IN "
    "(SELECT * FROM unnest(%b::text[], %b::text[]))"
)
_READ_TAILS: Final = (
    f"SELECT {EVENT_COLUMNS} FROM unnest(%b::text[], %b::bigint[]) AS wanted(sid, after_version) "
    'JOIN events ON events.stream_id = wanted.sid COLLATE "C" AND events.version > wanted.after_version '
    "ORDER BY events.stream_id, events.version"
)
_READ_ALL: Final = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s"


class PostgresEventStore:
    """An :class:`~ledger.eventlog.port.EventStore` in a PostgreSQL database (see the module docstring).

    ``url`` is a libpq connection string or URL; the tables live in the first schema of its
    ``search_path``. The pool opens ``min_size`` connections at once and grows to ``max_size``. With
    ``migrate`` (the default) missing migrations are applied on opening. Opening fails with
    :class:`~ledger.eventlog.port.StoreError` when ``min_size`` connections cannot be made within
    ``open_timeout`` seconds. Its transaction handle is the
    :class:`psycopg.Connection` of the append. Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 8,
        migrate: bool = True,
        open_timeout: float = 30.0,
        connection_wait: float = CONNECTION_WAIT,
    ) -> None:
        self._url = url
        self._closed = False
        self._lock = threading.Lock()
        self._probe_conn: Connection | None = None
        self._probe_failed = False
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            open=False,
            name="ledger-event-store",
            timeout=connection_wait,
        )
        try:
            self._pool.open(wait=True, timeout=open_timeout)
        except Exception as error:  # PoolTimeout when no connection can be made in time
            self._pool.close()
            raise StoreError(f"could not connect to the event store database: {error}") from error
        if migrate:
            try:
                with self._pool.connection() as conn:
                    migrate_schema(conn)
            except BaseException:
                self._pool.close()
                raise

    @property
    def url(self) -> str:
        """The connection string the store was opened with."""
        return self._url

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """Lend a pooled connection in autocommit mode (each statement reads the latest commits).

        For read-model queries; the caller may open a transaction on it (``conn.transaction()``) but must
        end it before giving the connection back.
        """
        if self._closed:
            raise StoreError("the event store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolClosed as error:
            raise StoreError("the event store is closed") from error
        except PoolTimeout as error:  # no connection could be had (the database is unreachable, or all busy)
            raise StoreError(f"no database connection within {self._pool.timeout:g} s: {error}") from error
        except psycopg.OperationalError as error:  # the connection was lost (or the server refuses statements)
            raise StoreError(f"the database connection failed: {error}") from error

    def probe(self) -> None:
        """Raise :class:`StoreError` unless the database answers a statement now (within ``CONNECT_TIMEOUT``).

        It uses a connection of its own, so a pool busy with work never reads as an unreachable database. After
        a failed probe, the first one to succeed also has the pool check its idle connections, so connections
        the server dropped meanwhile are replaced before a request meets them.
        """
        try:
            if self._probe_conn is None or self._probe_conn.closed:
                self._probe_conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
            self._probe_conn.execute("SELECT 1")
        except psycopg.Error as error:
            self._probe_failed = True
            if self._probe_conn is not None:
                self._probe_conn.close()
                self._probe_conn = None
            raise StoreError(f"the database does not answer: {error}") from error
        if self._probe_failed:
            self._probe_failed = False
            self._pool.check()

    # -- writes -------------------------------------------------------------------------------------------

    def append(
        self,
        batch: AppendBatch,
        *,
        in_transaction: Callable[[Connection, list[StoredEvent]], None] | None = None,
    ) -> list[StoredEvent]:
        """Write ``batch`` in one transaction; see :meth:`ledger.eventlog.port.EventStore.append`.

        ``in_transaction`` gets the connection inside the open transaction, after the events are inserted.
        """
        check_batch(batch)
        with self.connection() as conn:
            in_hook = False
            try:
                with conn.transaction():
                    events = _write(conn, batch)
                    if in_transaction is not None:
                        in_hook = True
                        in_transaction(conn, list(events))
                        in_hook = False
                        status = conn.info.transaction_status
                        if status == TransactionStatus.INERROR:
                            raise StoreError("a statement of the in_transaction hook failed")
                        if status != TransactionStatus.INTRANS:
                            raise StoreError("the in_transaction hook ended the append's transaction")
            except psycopg.Error as error:
                if in_hook:  # the hook's own error propagates as it is
                    raise
                raise StoreError(f"append failed: {error}") from error
            return events

    # -- reads --------------------------------------------------------------------------------------------

    def _query(self, sql: str, parameters: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            with self.connection() as conn:
                return conn.execute(sql.encode(), parameters).fetchall()
        except psycopg.Error as error:
            raise StoreError(f"query failed: {error}") from error

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        rows = self._query(_READ_STREAM, (stream_id, after_version, None if limit is None else max(limit, 0)))
        return [_event_from_row(row) for row in rows]

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        if not after_versions:
            return {}
        rows = self._query(_READ_TAILS, (list(after_versions), list(after_versions.values())))
        tails: dict[str, list[StoredEvent]] = {}
        for row in rows:
            event = _event_from_row(row)
            tails.setdefault(event.stream_id, []).append(event)
        return tails

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = self._query(_READ_ALL, (after_position, max(limit, 0)))
        return [_event_from_row(row) for row in rows]

    def stream_version(self, stream_id: str) -> int:
        rows = self._query("SELECT version FROM streams WHERE stream_id = %s", (stream_id,))
        return int(rows[0][0]) if rows else 0

    def stream_head_hash(self, stream_id: str) -> bytes:
        rows = self._query("SELECT head_hash FROM streams WHERE stream_id = %s", (stream_id,))
        return bytes(rows[0][0]) if rows else GENESIS

    def find_command(self, program_id: str, idempotency_key: str) -> CommandRecord | None:
        rows = self._query(
            f"SELECT {COMMAND_COLUMNS} FROM commands WHERE program_id = %s AND idempotency_key = %s",
            (program_id, idempotency_key),
        )
        return _command_from_row(rows[0]) if rows else None

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        """The recorded commands among ``(program_id, idempotency_key)`` pairs, by pair (one query)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = self._query(_FIND_COMMANDS, ([k[0] for k in wanted], [k[1] for k in wanted]))
        found = (_command_from_row(row) for row in rows)
        return {(record.program_id, record.idempotency_key): record for record in found}

    def list_streams(self, prefix: str) -> list[str]:
        # stream_id has the "C" collation (code point order), so the range is a scan of the primary key.
        upper = prefix_upper_bound(prefix)
        if upper is None:
            rows = self._query(
                "SELECT stream_id FROM streams WHERE stream_id >= %s ORDER BY stream_id", (prefix,)
            )
        else:
            rows = self._query(
                "SELECT stream_id FROM streams WHERE stream_id >= %s AND stream_id < %s ORDER BY stream_id",
                (prefix, upper),
            )
        return [str(row[0]) for row in rows if str(row[0]).startswith(prefix)]

    def close(self) -> None:
        """Close the pool (waiting for lent connections to come back). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._probe_conn is not None:
            self._probe_conn.close()
        self._pool.close()


# -- the append's statements ----------------------------------------------------------------------------------


def _write(conn: Connection, batch: AppendBatch) -> list[StoredEvent]:
    """Everything ``append`` does inside its transaction except the hook (see the module docstring)."""
    if batch.commands:
        _record_commands(conn, batch.commands)
    ids = stream_ids(batch)
    if not ids:
        return []
    extended = sorted({append.stream_id for append in batch.appends if append.events})
    if extended:
        conn.execute(_CREATE_STREAMS, (GENESIS, extended))
    heads = {
        stream_id: StreamHead(version, bytes(head_hash))
        for stream_id, version, head_hash in conn.execute(_LOCK_HEADS, (ids,))
        if version > 0  # a placeholder: the stream does not exist yet
    }
    staged = stage_batch(batch, heads, 1)
    if not staged.events:
        return []
    row = conn.execute(_TAKE_POSITIONS, (len(staged.events),)).fetchone()
    if row is None:
        raise StoreError("the event_position counter row is missing")
    first = int(row[0]) - len(staged.events) + 1
    events = [dataclasses.replace(event, position=first + i) for i, event in enumerate(staged.events)]
    inserted = {r[0] for r in conn.execute(_INSERT_EVENTS, _event_columns(events))}
    if len(inserted) != len(events):
        duplicate = next(event.event_id for event in events if event.event_id not in inserted)
        raise DuplicateEventId(duplicate)
    heads_moved = list(staged.heads.items())
    conn.execute(
        _MOVE_HEADS,
        (
            [stream_id for stream_id, _ in heads_moved],
            [head.version for _, head in heads_moved],
            [head.hash for _, head in heads_moved],
        ),
    )
    return events


def _record_commands(conn: Connection, commands: Sequence[CommandRecord]) -> None:
    # Claimed in key order so two appends sharing keys wait for each other instead of deadlocking.
    ordered = sorted(commands, key=lambda c: (c.program_id, c.idempotency_key))
    inserted = {
        (r[0], r[1])
        for r in conn.execute(
            _INSERT_COMMANDS,
            (
                [c.program_id for c in ordered],
                [c.idempotency_key for c in ordered],
                [c.fingerprint for c in ordered],
                [bytes(c.response) for c in ordered],
                [c.recorded_at for c in ordered],
                [c.stream_id for c in ordered],
            ),
        )
    }
    if len(inserted) != len(commands):
        duplicate = next(c for c in commands if (c.program_id, c.idempotency_key) not in inserted)
        raise DuplicateCommand(duplicate.program_id, duplicate.idempotency_key)


def _event_columns(events: list[StoredEvent]) -> tuple[list[Any], ...]:
    return (
        [e.position for e in events],
        [e.event_id for e in events],
        [e.stream_id for e in events],
        [e.version for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.occurred_at for e in events],
        [e.recorded_at for e in events],
        [e.policy_version for e in events],
        [e.idempotency_key for e in events],
        [e.correlation_id for e in events],
        [e.causation_id for e in events],
        [encode_canonical(dict(e.actor)) for e in events],
        [e.payload for e in events],
        [e.prev_hash for e in events],
        [e.hash for e in events],
    )


# -- rows to the port's types ---------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _event_from_row(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        position=row[0],
        event_id=row[1],
        stream_id=row[2],
        version=row[3],
        type=row[4],
        schema_version=row[5],
        occurred_at=_utc(row[6]),
        recorded_at=_utc(row[7]),
        policy_version=row[8],
        idempotency_key=row[9],
        correlation_id=row[10],
        causation_id=row[11],
        actor=MappingProxyType(json.loads(row[12])),
        payload=bytes(row[13]),
        prev_hash=bytes(row[14]),
        hash=bytes(row[15]),
    )


def _command_from_row(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        program_id=row[0],
        idempotency_key=row[1],
        fingerprint=row[2],
        response=bytes(row[3]),
        recorded_at=_utc(row[4]),
        stream_id=row[5],
    )
