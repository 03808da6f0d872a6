"""The personal-data vault in SQLite files beside the log: profiles encrypted per member, erasable by key.

The ciphertexts live in the vault file (``ledger.personal.db``), the members' data keys in a file of their own
beside it (``ledger.personal.keys.db``): a copy of one file alone opens nothing. A vault written before the keys
moved out (its ``member_key`` table inside the vault file) is migrated on open: the keys are copied to the key
file, then the old table is dropped.

Both files run with ``PRAGMA secure_delete=ON``, so SQLite overwrites what it deletes instead of leaving it in
free pages, and after an erasure both write-ahead logs are checkpointed and truncated, so no old page image of
the key or the ciphertext stays in a ``-wal`` file either.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ledger.application.personal import PersonalProfile, new_key, seal, unseal


def key_file(vault_path: str) -> str:
    """The file of the members' data keys beside the vault ``vault_path`` (``x.personal.db`` -> ``x.personal.keys.db``)."""
    return str(Path(vault_path).with_suffix(".keys.db"))


class PersonalDataStore:
    """The embedded personal-data store: a SQLite file of its own beside the event log, and its key file.

    With ``shared=True`` other processes write the same files (``ledger serve --processes N``): a member
    enrolled through another process gets its profile saved there after the enrolment, or erased. Then what
    :meth:`load` remembers (profiles and misses alike) holds only while ``PRAGMA data_version`` of the vault is
    unchanged, that is while no other connection committed to it; any commit elsewhere drops the whole cache.
    """

    def __init__(self, path: str, *, shared: bool = False) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], PersonalProfile | None] = {}
        self._shared = shared
        self._data_version: int | None = None  # shared only: the file's version the cache is valid for
        with self._lock:
            self._conn.execute("PRAGMA secure_delete=ON")  # before ATTACH: the key file inherits it
            self._conn.execute("ATTACH DATABASE ? AS keys", (key_file(path),))
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA main.journal_mode=WAL")
            self._conn.execute("PRAGMA keys.journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS keys.member_key (program_id TEXT, member_id TEXT, key BLOB,"
                " PRIMARY KEY (program_id, member_id))"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS main.personal_data (program_id TEXT, member_id TEXT, nonce BLOB,"
                " ciphertext BLOB, PRIMARY KEY (program_id, member_id))"
            )
            self._move_keys_out()

    def _move_keys_out(self) -> None:
        """Move the keys of a vault written before they had a file of their own (copied first, then dropped:
        an interrupted move is finished on the next open)."""
        old = self._conn.execute("SELECT 1 FROM main.sqlite_master WHERE type='table' AND name='member_key'")
        if old.fetchone() is None:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute(
            "INSERT OR IGNORE INTO keys.member_key SELECT program_id, member_id, key FROM main.member_key"
        )
        self._conn.execute("COMMIT")
        # secure_delete: the dropped table's pages are overwritten, not just freed
        self._conn.execute("DROP TABLE main.member_key")
        self._truncate_logs()

    def _truncate_logs(self) -> None:
        """Checkpoint both write-ahead logs into their files and truncate them (best effort while another process
        reads: SQLite then truncates at that process's next checkpoint)."""
        for schema in ("main", "keys"):
            self._conn.execute(f"PRAGMA {schema}.wal_checkpoint(TRUNCATE)")

    def save(self, program_id: str, member_id: str, profile: PersonalProfile) -> None:
        with self._lock:
            row = self._conn.execute(
                "SELECT key FROM keys.member_key WHERE program_id=? AND member_id=?", (program_id, member_id)
            ).fetchone()
            key = row[0] if row else new_key()
            nonce, ciphertext = seal(key, program_id, member_id, profile)
            self._conn.execute("BEGIN")
            self._conn.execute(
                "INSERT OR IGNORE INTO keys.member_key VALUES (?,?,?)", (program_id, member_id, key)
            )
            self._conn.execute(
                "INSERT OR REPLACE INTO main.personal_data VALUES (?,?,?,?)",
                (program_id, member_id, nonce, ciphertext),
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
            version = self._conn.execute("PRAGMA main.data_version").fetchone()[0]
            if version != self._data_version:  # another connection committed: profiles may have come or gone
                self._cache.clear()
                self._data_version = version
            if key in self._cache:
                return self._cache[key]
            return self._remember(key, self._select(program_id, member_id))

    def _select(self, program_id: str, member_id: str) -> tuple[bytes, bytes, bytes] | None:
        row: tuple[bytes, bytes, bytes] | None = self._conn.execute(
            "SELECT k.key, p.nonce, p.ciphertext FROM main.personal_data p JOIN keys.member_key k"
            " USING (program_id, member_id) WHERE program_id=? AND member_id=?",
            (program_id, member_id),
        ).fetchone()
        return row

    def _remember(
        self, key: tuple[str, str], row: tuple[bytes, bytes, bytes] | None
    ) -> PersonalProfile | None:
        profile = None
        if row is not None:
            profile = unseal(row[0], row[1], row[2], key[0], key[1])
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = profile
        return profile

    def erase(self, program_id: str, member_id: str) -> None:
        """Destroy the member's key (crypto-shredding) and its ciphertext, overwritten in both files and logs."""
        with self._lock:
            member = (program_id, member_id)
            self._conn.execute("DELETE FROM keys.member_key WHERE program_id=? AND member_id=?", member)
            self._conn.execute("DELETE FROM main.personal_data WHERE program_id=? AND member_id=?", member)
            self._truncate_logs()
            self._cache.pop(member, None)

    def close(self) -> None:
        self._conn.close()
