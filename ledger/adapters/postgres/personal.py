"""Personal data on PostgreSQL, for replicas that share one database: the same sealing as the embedded store.

The ciphertexts are in ``personal_data`` of the ledger's schema; the members' data keys in ``member_key`` of a
schema of their own, the ledger's schema name with ``_keys`` appended (``public_keys`` for ``public``), so the
two can be granted, dumped and backed up apart. The keys schema is created when missing (or create it
beforehand, for a role without CREATE on the database). Keys kept in the ledger's schema before they moved out
are moved on open.

Every replica reads the same rows, so a profile saved through one replica is seen by the others. Only
profiles that exist are cached (a member enrolled through another replica may get one a moment later), and
erasing through one replica is seen by the others once their cache entry ages out (``cache_seconds``).

What a DELETE leaves: the deleted rows stay as dead tuples in their pages until VACUUM reclaims them (and in
the WAL and in backups until those age out); see docs/security.md. Destroying the key is what makes the
ciphertext useless.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

from ledger.application.personal import PersonalProfile, new_key, seal, unseal

ConnectionFactory = Callable[[], AbstractContextManager[Any]]

# The advisory lock the vault's schema changes take (replicas starting together).
_SCHEMA_LOCK: Final = 0x6C65_6B65


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def keys_schema(schema: str) -> str:
    """The schema of the members' data keys beside the ledger's schema ``schema``."""
    return f"{schema}_keys"


class PostgresPersonalDataStore:
    def __init__(self, connection: ConnectionFactory, *, cache_seconds: float = 60.0) -> None:
        self._connection = connection
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, PersonalProfile]] = {}
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            keys = keys_schema(schema)
            self._data = f"{_quoted(schema)}.personal_data"
            self._keys = f"{_quoted(keys)}.member_key"
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (keys,)).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {_quoted(keys)}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._keys} (program_id TEXT NOT NULL, member_id TEXT NOT NULL,"
                " key BYTEA NOT NULL, PRIMARY KEY (program_id, member_id))"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._data} (program_id TEXT NOT NULL, member_id TEXT NOT NULL,"
                " nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL, PRIMARY KEY (program_id, member_id))"
            )
            old = f"{_quoted(schema)}.member_key"
            if conn.execute("SELECT to_regclass(%s)", (old,)).fetchone()[0] is not None:
                conn.execute(
                    f"INSERT INTO {self._keys} SELECT program_id, member_id, key FROM {old} ON CONFLICT DO NOTHING"
                )
                conn.execute(f"DROP TABLE {old}")

    def save(self, program_id: str, member_id: str, profile: PersonalProfile) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(
                f"INSERT INTO {self._keys} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (program_id, member_id, new_key()),
            )
            row = conn.execute(
                f"SELECT key FROM {self._keys} WHERE program_id = %s AND member_id = %s",
                (program_id, member_id),
            ).fetchone()
            nonce, ciphertext = seal(bytes(row[0]), program_id, member_id, profile)
            conn.execute(
                f"INSERT INTO {self._data} VALUES (%s, %s, %s, %s) ON CONFLICT (program_id, member_id)"
                " DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext",
                (program_id, member_id, nonce, ciphertext),
            )
        with self._lock:
            self._cache[(program_id, member_id)] = (time.monotonic(), profile)

    def load(self, program_id: str, member_id: str) -> PersonalProfile | None:
        key = (program_id, member_id)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._cache_seconds:
            return hit[1]
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT k.key, p.nonce, p.ciphertext FROM {self._data} p JOIN {self._keys} k"
                " USING (program_id, member_id) WHERE program_id = %s AND member_id = %s",
                key,
            ).fetchone()
        if row is None:
            return None
        profile = unseal(bytes(row[0]), bytes(row[1]), bytes(row[2]), program_id, member_id)
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic(), profile)
        return profile

    def erase(self, program_id: str, member_id: str) -> None:
        """Destroy the member's key (crypto-shredding) and its ciphertext."""
        with self._connection() as conn, conn.transaction():
            member = (program_id, member_id)
            conn.execute(f"DELETE FROM {self._keys} WHERE program_id = %s AND member_id = %s", member)
            conn.execute(f"DELETE FROM {self._data} WHERE program_id = %s AND member_id = %s", member)
        with self._lock:
            self._cache.pop((program_id, member_id), None)

    def close(self) -> None:
        """Nothing of its own to release: connections belong to the caller's pool."""
