"""The personal-data vault in a SQLite file beside the log: profiles encrypted per member, erasable by key."""

from __future__ import annotations

import sqlite3
import threading

from ledger.application.personal import PersonalProfile, new_key, seal, unseal


class PersonalDataStore:
    """The embedded personal-data store: a SQLite file of its own beside the event log.

    With ``shared=True`` other processes write the same file (``ledger serve --processes N``): a member
    enrolled through another process gets its profile saved there after the enrolment, or erased. Then what
    :meth:`load` remembers (profiles and misses alike) holds only while ``PRAGMA data_version`` is unchanged,
    that is while no other connection committed to the file; any commit elsewhere drops the whole cache.
    """

    def __init__(self, path: str, *, shared: bool = False) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], PersonalProfile | None] = {}
        self._shared = shared
        self._data_version: int | None = None  # shared only: the file's version the cache is valid for
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS member_key (program_id TEXT, member_id TEXT, key BLOB,"
                " PRIMARY KEY (program_id, member_id))"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS personal_data (program_id TEXT, member_id TEXT, nonce BLOB,"
                " ciphertext BLOB, PRIMARY KEY (program_id, member_id))"
            )

    def save(self, program_id: str, member_id: str, profile: PersonalProfile) -> None:
        with self._lock:
            row = self._conn.execute(
                "SELECT key FROM member_key WHERE program_id=? AND member_id=?", (program_id, member_id)
            ).fetchone()
            key = row[0] if row else new_key()
            nonce, ciphertext = seal(key, program_id, member_id, profile)
            self._conn.execute("BEGIN")
            self._conn.execute("INSERT OR IGNORE INTO member_key VALUES (?,?,?)", (program_id, member_id, key))
            self._conn.execute(
                "INSERT OR REPLACE INTO personal_data VALUES (?,?,?,?)", (program_id, member_id, nonce, ciphertext)
            )
            self._conn.execute("COMMIT")
            self._cache[(program_id, member_id)] = profile

    def load(self, program_id: str, member_id: str) -> PersonalProfile | None:
        key = (program_id, member_id)
        if not self._shared:
            if key in self._cache:
                return self._cache[key]
            with self._lock:
                row = self._select(program_id, member_id)
            return self._remember(key, row)
        with self._lock:  # checked, read and remembered under one lock: a commit seen later clears it again
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:  # another connection committed: profiles may have come or gone
                self._cache.clear()
                self._data_version = version
            if key in self._cache:
                return self._cache[key]
            return self._remember(key, self._select(program_id, member_id))

    def _select(self, program_id: str, member_id: str) -> tuple[bytes, bytes, bytes] | None:
        row: tuple[bytes, bytes, bytes] | None = self._conn.execute(
            "SELECT k.key, p.nonce, p.ciphertext FROM personal_data p JOIN member_key k"
            " USING (program_id, member_id) WHERE program_id=? AND member_id=?",
            (program_id, member_id),
        ).fetchone()
        return row

    def _remember(self, key: tuple[str, str], row: tuple[bytes, bytes, bytes] | None) -> PersonalProfile | None:
        profile = None
        if row is not None:
            profile = unseal(row[0], row[1], row[2], key[0], key[1])
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = profile
        return profile

    def erase(self, program_id: str, member_id: str) -> None:
        """Destroy the member's key (crypto-shredding); the ciphertext left behind is unreadable."""
        with self._lock:
            self._conn.execute("DELETE FROM member_key WHERE program_id=? AND member_id=?", (program_id, member_id))
            self._conn.execute("DELETE FROM personal_data WHERE program_id=? AND member_id=?", (program_id, member_id))
            self._cache.pop((program_id, member_id), None)

    def close(self) -> None:
        self._conn.close()
