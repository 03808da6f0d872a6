"""Read connections to a read-model SQLite file that is not the event store's (the KurrentDB backend).

:class:`SqliteReaders` hands each thread its own query-only connection to the file (as
:meth:`ledger.adapters.sqlite.store.SqliteEventStore.read_connection` does for the embedded store), after putting the
file in WAL mode so readers never block the projection's writes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref


class _Handle:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        weakref.finalize(self, conn.close)


class SqliteReaders:
    """Per-thread query-only connections to the SQLite file at ``path`` (created when missing)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self._path = os.fspath(path)
        self._timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._closed = False
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=busy_timeout)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()

    @property
    def path(self) -> str:
        return self._path

    def connection(self) -> sqlite3.Connection:
        """This thread's query-only connection (each statement sees the last committed state)."""
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("the read-model connections are closed")
                conn = sqlite3.connect(
                    self._path, isolation_level=None, timeout=self._timeout, check_same_thread=False
                )
                conn.execute("PRAGMA query_only = ON")
                handle = _Handle(conn)
                self._handles.add(handle)
            self._local.handle = handle
        return handle.conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for handle in list(self._handles):
                handle.conn.close()
