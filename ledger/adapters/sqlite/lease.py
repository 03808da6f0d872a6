"""A lease held as an ``flock`` on a file beside the SQLite store, so scheduled work runs in one process.

:class:`FileLease` opens ``<db>.<name>.lease`` and takes a non-blocking exclusive ``flock`` on it. The lock
belongs to that open file: it lasts until the holder releases it, closes the lease, or dies (the OS closes the
file and frees the lock), and then another process's :meth:`FileLease.try_acquire` succeeds. It only works
between processes of one machine, which is what the embedded store is shared by (``ledger serve
--processes N``). Two leases of one name in one process also exclude each other (each opens the file).

The holder's pid is written into the file, for people looking; the lock is what counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from types import TracebackType

from ledger.eventlog.port import StoreError


class FileLease:
    """A named lease held by at most one open file of ``<path>.<name>.lease`` at a time. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        self._name = name
        self._file = f"{os.fspath(path)}.{name}.lease"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> str:
        return self._file

    def __enter__(self) -> FileLease:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def try_acquire(self) -> bool:
        """Take the lease if no other holder has it; True if this lease holds it now (also if it did)."""
        with self._lock:
            if self._closed:
                raise StoreError(f"lease {self._name!r} is closed")
            if self._fd is not None and self._still_ours():
                return True
            try:
                fd = os.open(self._file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                raise StoreError(f"could not open lease file {self._file!r}: {error}") from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as error:
                os.close(fd)
                raise StoreError(f"could not try lease {self._name!r}: {error}") from error
            self._fd = fd
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            return True

    def held(self) -> bool:
        """Whether this lease holds the lock (and its file was not removed or replaced since)."""
        with self._lock:
            return self._fd is not None and self._still_ours()

    def release(self) -> None:
        """Give the lease up. Idempotent."""
        with self._lock:
            self._drop()

    def close(self) -> None:
        """Release the lease; later :meth:`try_acquire` calls fail. Idempotent."""
        with self._lock:
            self._closed = True
            self._drop()

    # -- internals (called with the lock held) ------------------------------------------------------------

    def _still_ours(self) -> bool:
        """A lock on a file that was since unlinked or replaced excludes no one: then drop it."""
        assert self._fd is not None
        try:
            mine = os.fstat(self._fd)
            current = os.stat(self._file)
        except OSError:
            self._drop()
            return False
        if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
