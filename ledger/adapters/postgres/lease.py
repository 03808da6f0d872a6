"""A lease held as a PostgreSQL session advisory lock, so scheduled work runs on exactly one replica.

:class:`AdvisoryLease` keeps a dedicated connection (outside any pool) and takes
``pg_try_advisory_lock(key)`` on it, where ``key`` is derived from the lease's name. The lock lives as long
as that session: when the holder releases it, closes the lease, or dies (process killed, connection
dropped, backend terminated), PostgreSQL ends the session and frees the lock, and another replica's
:meth:`AdvisoryLease.try_acquire` succeeds. TCP keepalives on both ends bound how long a holder that
vanished from the network keeps the lock.

The holder should call :meth:`AdvisoryLease.held` before each piece of work (and stop when it returns
False): it checks that the session is alive and still holds the lock. Advisory locks are per database,
not per schema, so two stores in different schemas of one database share lease names.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from types import TracebackType
from typing import Any, Final

import psycopg

from ledger.eventlog.port import StoreError

_SESSION_SETTINGS: Final = (
    "SET statement_timeout = '10s'",
    "SET idle_in_transaction_session_timeout = 0",
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)


def lease_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of the lease called ``name``."""
    return int.from_bytes(hashlib.sha256(f"ledger.lease:{name}".encode()).digest()[:8], "big", signed=True)


class AdvisoryLease:
    """A named lease held by at most one session of the database at a time. Thread-safe."""

    def __init__(self, url: str, name: str, *, connect_timeout: float = 10.0) -> None:
        self._url = url
        self._name = name
        self._key = lease_key(name)
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    def __enter__(self) -> AdvisoryLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def try_acquire(self) -> bool:
        """Take the lease if no other session holds it; True if this lease holds it now (also if it did).

        Reconnects when the previous session was lost. Raises :class:`StoreError` when the database cannot
        be reached.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"lease {self._name!r} is closed")
            if self._held and self._check_held():
                return True
            try:
                conn = self._connection()
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
            except psycopg.Error as error:
                self._drop_connection()
                raise StoreError(f"could not try lease {self._name!r}: {error}") from error
            self._held = bool(row and row[0])
            return self._held

    def held(self) -> bool:
        """Whether this lease's session is alive and still holds the lock (one round trip)."""
        with self._lock:
            return self._held and self._check_held()

    def release(self) -> None:
        """Give the lease up (keeping the connection for a later :meth:`try_acquire`). Idempotent."""
        with self._lock:
            if not self._held:
                return
            self._held = False
            if self._conn is None:
                return
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                self._drop_connection()  # ending the session frees the lock all the same

    def close(self) -> None:
        """Release the lease and close its connection. Idempotent."""
        with self._lock:
            self._closed = True
            if self._held and self._conn is not None and not self._conn.closed:
                # Unlock before hanging up: the server frees a closed session's locks only once its backend
                # has exited, which a standby trying at once could otherwise miss.
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._held = False
            self._drop_connection()

    # -- internals (called with the lock held) ------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        conn = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout)),
            application_name=f"ledger-lease:{self._name}"[:63],
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        try:
            for statement in _SESSION_SETTINGS:
                conn.execute(statement)
        except psycopg.Error:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _check_held(self) -> bool:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._held = False
            self._drop_connection()
            return False
        try:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)",
                ((self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF),
            ).fetchone()
        except psycopg.Error:
            self._held = False
            self._drop_connection()
            return False
        self._held = bool(row and row[0])
        return self._held

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
