"""The embedded event store: one SQLite file in WAL mode.

Durability: with ``synchronous="FULL"`` (the default) every commit fsyncs the write-ahead log before
``append`` returns, so an acknowledged append survives a crash or power loss. ``"NORMAL"`` may lose the
last appends on power loss (never on a process crash) and ``"OFF"`` is for throwaway databases only.

Writes go through one connection guarded by a lock, so appends serialize; each is one ``BEGIN IMMEDIATE``
transaction with one ``executemany`` per table. The write path amortises the commit's fsync by putting a whole
group of commands into one :class:`AppendBatch`.

Several processes may append to one file (``ledger serve --processes N``). Around each write transaction an
append takes an exclusive ``flock`` on ``<file>.write-lock``: a writer waiting for it wakes as soon as the
holder releases it, where SQLite's own busy handler would sleep 1-100 ms between retries. ``BEGIN IMMEDIATE``
stays the guarantee inside the database (a writer that does not take the file lock still waits on the busy
timeout). Positions and stream versions are read inside the transaction from the file, never from counters in
the process, so appends from different processes never collide: each sees the other's committed rows.

Reads use a connection per thread (:meth:`SqliteEventStore.read_connection`), each statement reading a
committed snapshot, so readers never block the writer or each other. Query-side read models kept in the
same file read through the same per-thread connections and are written in ``append``'s ``in_transaction``
hook, which gets the writer connection inside the open transaction.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from ledger.adapters.sqlite.codec import (
    COMMAND_COLUMNS,
    EVENT_COLUMNS,
    command_from_row,
    command_row,
    event_from_row,
    event_row,
)
from ledger.adapters.sqlite.migrations import migrate
from ledger.eventlog.chain import GENESIS
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import StreamHead, check_batch, prefix_upper_bound, stage_batch, stream_ids

Synchronous = Literal["FULL", "NORMAL", "OFF"]

_SYNCHRONOUS: Final = ("FULL", "NORMAL", "OFF")
_CHUNK: Final = 500  # bound parameters per IN (...) list

_INSERT_EVENT: Final = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_INSERT_COMMAND: Final = f"INSERT INTO commands ({COMMAND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_UPSERT_STREAM: Final = (
    "INSERT INTO streams (stream_id, version, head_hash) VALUES (?, ?, ?) "
    "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, head_hash = excluded.head_hash"
)


class _ReadHandle:
    """Owns one thread's read connection; the connection closes when the thread's handle is collected."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        weakref.finalize(self, conn.close)


_IN_CHUNK: Final = 500  # keys per IN (...) list, well under SQLite's variable limit


class SqliteEventStore:
    """An :class:`~ledger.eventlog.port.EventStore` in one SQLite file.

    Its transaction handle is the writer :class:`sqlite3.Connection`. Every method is thread-safe; stop
    the threads that read before calling :meth:`close`, which closes their read connections too.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL", busy_timeout: float = 5.0
    ) -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        self._path = os.fspath(path)
        if self._path == ":memory:" or self._path.startswith("file:"):
            raise ValueError("SqliteEventStore needs a file path: its read connections open the file again")
        self._busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._readers_lock = threading.Lock()
        self._readers: weakref.WeakSet[_ReadHandle] = weakref.WeakSet()
        self._local = threading.local()
        self._closed = False
        self._lock_fd = os.open(f"{self._path}.write-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._writer = self._connect()
        except BaseException:
            os.close(self._lock_fd)
            raise
        try:
            mode = self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not put {self._path!r} in WAL mode (journal_mode is {mode!r})")
            self._writer.execute(f"PRAGMA synchronous = {synchronous}")
            migrate(self._writer)
        except BaseException:
            self._writer.close()
            os.close(self._lock_fd)
            raise

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )

    def __enter__(self) -> SqliteEventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------------------

    def append(
        self,
        batch: AppendBatch,
        *,
        in_transaction: Callable[[sqlite3.Connection, list[StoredEvent]], None] | None = None,
    ) -> list[StoredEvent]:
        """Write ``batch`` in one transaction; see :meth:`ledger.eventlog.port.EventStore.append`.

        ``in_transaction`` gets the writer connection inside the open transaction; it may run any SQL
        but must not commit or roll back.
        """
        check_batch(batch)
        with self._write_lock:
            if self._closed:
                raise StoreError("the event store is closed")
            conn = self._writer
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # other processes' appends; releases the GIL while waiting
            try:
                _execute(conn, "BEGIN IMMEDIATE")
                try:
                    events = self._write(conn, batch)
                    if in_transaction is not None:
                        in_transaction(conn, list(events))
                        if not conn.in_transaction:
                            raise StoreError("the in_transaction hook ended the append's transaction")
                    _execute(conn, "COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            return events

    def probe(self) -> None:
        """Raise :class:`StoreError` unless an append could write now: ``BEGIN IMMEDIATE`` and ``ROLLBACK`` on the
        writer connection, under the same locks as :meth:`append` (so it never collides with this process's own
        appends). Another process holding the database's write lock makes it wait, then fail."""
        with self._write_lock:
            if self._closed:
                raise StoreError("the event store is closed")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                _execute(self._writer, "BEGIN IMMEDIATE")
                _execute(self._writer, "ROLLBACK")
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _write(self, conn: sqlite3.Connection, batch: AppendBatch) -> list[StoredEvent]:
        if batch.commands:
            try:
                conn.executemany(_INSERT_COMMAND, [command_row(command) for command in batch.commands])
            except sqlite3.IntegrityError as error:
                conn.execute("ROLLBACK")
                raise _duplicate_command(conn, batch.commands) from error
            except sqlite3.Error as error:
                raise StoreError(f"recording the commands failed: {error}") from error
        try:  # from the file, inside the transaction: another process may have appended since our last append
            heads = _load_heads(conn, stream_ids(batch))
            first_position = conn.execute("SELECT coalesce(max(position), 0) + 1 FROM events").fetchone()[0]
        except sqlite3.Error as error:
            raise StoreError(f"reading stream heads failed: {error}") from error
        staged = stage_batch(batch, heads, first_position)
        if not staged.events:
            return []
        try:
            conn.executemany(_INSERT_EVENT, [event_row(event) for event in staged.events])
        except sqlite3.IntegrityError as error:
            conn.execute("ROLLBACK")
            raise _duplicate_event(conn, staged.events) from error
        except sqlite3.Error as error:
            raise StoreError(f"inserting the events failed: {error}") from error
        _executemany(
            conn, _UPSERT_STREAM, [(sid, head.version, head.hash) for sid, head in staged.heads.items()]
        )
        return staged.events

    # -- reads --------------------------------------------------------------------------------------------

    def read_connection(self) -> sqlite3.Connection:
        """This thread's read-only connection to the store's file (opened on first use, closed with the
        store or when the thread ends). Each statement sees the last committed state."""
        handle: _ReadHandle | None = getattr(self._local, "handle", None)
        if handle is None or self._closed:
            handle = self._open_reader()
            self._local.handle = handle
        return handle.conn

    def _open_reader(self) -> _ReadHandle:
        with self._readers_lock:
            if self._closed:
                raise StoreError("the event store is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            handle = _ReadHandle(conn)
            self._readers.add(handle)
            return handle

    def _query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.read_connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise StoreError(f"query failed: {error}") from error

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?",
            (stream_id, after_version, -1 if limit is None else max(limit, 0)),
        )
        return [event_from_row(row) for row in rows]

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        # In-process reads cost no round trip: one indexed query per stream is as fast as a join.
        tails = {sid: self.read_stream(sid, after_version=v) for sid, v in after_versions.items()}
        return {sid: events for sid, events in tails.items() if events}

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = self._query(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after_position, max(limit, 0)),
        )
        return [event_from_row(row) for row in rows]

    def stream_version(self, stream_id: str) -> int:
        rows = self._query("SELECT version FROM streams WHERE stream_id = ?", (stream_id,))
        return int(rows[0][0]) if rows else 0

    def stream_head_hash(self, stream_id: str) -> bytes:
        rows = self._query("SELECT head_hash FROM streams WHERE stream_id = ?", (stream_id,))
        return bytes(rows[0][0]) if rows else GENESIS

    def find_command(self, program_id: str, idempotency_key: str) -> CommandRecord | None:
        rows = self._query(
            f"SELECT {COMMAND_COLUMNS} FROM commands WHERE program_id = ? AND idempotency_key = ?",
            (program_id, idempotency_key),
        )
        return command_from_row(rows[0]) if rows else None

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        by_program: dict[str, list[str]] = {}
        for program_id, key in dict.fromkeys(keys):
            by_program.setdefault(program_id, []).append(key)
        found: dict[tuple[str, str], CommandRecord] = {}
        for program_id, wanted in by_program.items():
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = self._query(
                    f"SELECT {COMMAND_COLUMNS} FROM commands WHERE program_id = ? AND idempotency_key IN "
                    f"({', '.join('?' * len(chunk))})",
                    (program_id, *chunk),
                )
                for row in rows:
                    record = command_from_row(row)
                    found[(record.program_id, record.idempotency_key)] = record
        return found

    def list_streams(self, prefix: str) -> list[str]:
        upper = prefix_upper_bound(prefix)
        if upper is None:
            rows = self._query(
                "SELECT stream_id FROM streams WHERE stream_id >= ? ORDER BY stream_id", (prefix,)
            )
        else:
            rows = self._query(
                "SELECT stream_id FROM streams WHERE stream_id >= ? AND stream_id < ? ORDER BY stream_id",
                (prefix, upper),
            )
        return [str(row[0]) for row in rows if str(row[0]).startswith(prefix)]

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for handle in list(self._readers):
                handle.conn.close()
            self._writer.close()
            os.close(self._lock_fd)


def _execute(conn: sqlite3.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except sqlite3.Error as error:
        raise StoreError(f"{sql} failed: {error}") from error


def _executemany(conn: sqlite3.Connection, sql: str, rows: list[tuple[object, ...]]) -> None:
    try:
        conn.executemany(sql, rows)
    except sqlite3.Error as error:
        raise StoreError(f"write failed: {error}") from error


def _load_heads(conn: sqlite3.Connection, ids: list[str]) -> dict[str, StreamHead]:
    heads: dict[str, StreamHead] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT stream_id, version, head_hash FROM streams WHERE stream_id IN ({marks})"
        for stream_id, version, head_hash in conn.execute(sql, chunk):
            heads[stream_id] = StreamHead(version, head_hash)
    return heads


def _duplicate_command(conn: sqlite3.Connection, commands: Sequence[CommandRecord]) -> StoreError:
    """Which command key is already recorded (called after the rollback, under the write lock)."""
    for command in commands:
        found = conn.execute(
            "SELECT 1 FROM commands WHERE program_id = ? AND idempotency_key = ?",
            (command.program_id, command.idempotency_key),
        ).fetchone()
        if found is not None:
            return DuplicateCommand(command.program_id, command.idempotency_key)
    return StoreError("recording the commands violated a constraint")


def _duplicate_event(conn: sqlite3.Connection, events: Sequence[StoredEvent]) -> StoreError:
    """Which event id is already stored (called after the rollback, under the write lock)."""
    for event in events:
        if conn.execute("SELECT 1 FROM events WHERE event_id = ?", (event.event_id,)).fetchone() is not None:
            return DuplicateEventId(event.event_id)
    return StoreError("the events table and the streams table disagree (stream version already taken)")
