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

The append's statements live in :mod:`ledger.adapters.postgres.store_appending`, the read queries and the
rows' decoding in :mod:`ledger.adapters.postgres.store_reading`; the schema in
:mod:`ledger.adapters.postgres.migrations`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ledger.adapters.postgres.migrations import migrate as migrate_schema
from ledger.adapters.postgres.store_appending import write
from ledger.adapters.postgres.store_reading import (
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    FIND_COMMANDS,
    READ_ALL,
    READ_STREAM,
    READ_TAILS,
    command_from_row,
    event_from_row,
)
from ledger.eventlog.chain import GENESIS
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import check_batch, prefix_upper_bound

__all__ = ["COMMAND_COLUMNS", "CONNECTION_WAIT", "CONNECT_TIMEOUT", "EVENT_COLUMNS", "PostgresEventStore"]

Connection = psycopg.Connection[Any]

CONNECTION_WAIT: Final = 2.0
"""Seconds a statement waits for a pooled connection before the store answers that it is unavailable."""
CONNECT_TIMEOUT: Final = 3
"""Seconds to open one connection (libpq ``connect_timeout``)."""


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
        except (
            psycopg.OperationalError
        ) as error:  # the connection was lost (or the server refuses statements)
            raise StoreError(f"the database connection failed: {error}") from error

    def probe(self) -> None:
        """Raise :class:`StoreError` unless the database answers a statement now (within ``CONNECT_TIMEOUT``).

        It uses a connection of its own, so a pool busy with work never reads as an unreachable database. After
        a failed probe, the first one to succeed also has the pool check its idle connections, so connections
        the server dropped meanwhile are replaced before a request meets them.
        """
        try:
            if self._probe_conn is None or self._probe_conn.closed:
                self._probe_conn = psycopg.connect(
                    self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                )
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
                    events = write(conn, batch)
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
        rows = self._query(READ_STREAM, (stream_id, after_version, None if limit is None else max(limit, 0)))
        return [event_from_row(row) for row in rows]

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        if not after_versions:
            return {}
        rows = self._query(READ_TAILS, (list(after_versions), list(after_versions.values())))
        tails: dict[str, list[StoredEvent]] = {}
        for row in rows:
            event = event_from_row(row)
            tails.setdefault(event.stream_id, []).append(event)
        return tails

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = self._query(READ_ALL, (after_position, max(limit, 0)))
        return [event_from_row(row) for row in rows]

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
        return command_from_row(rows[0]) if rows else None

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        """The recorded commands among ``(program_id, idempotency_key)`` pairs, by pair (one query)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        rows = self._query(FIND_COMMANDS, ([k[0] for k in wanted], [k[1] for k in wanted]))
        found = (command_from_row(row) for row in rows)
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
