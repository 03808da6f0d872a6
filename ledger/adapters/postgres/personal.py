"""Personal data on PostgreSQL, for replicas that share one database: the same sealing as the embedded store.

Every replica reads the same rows, so a profile saved through one replica is seen by the others. Only
profiles that exist are cached (a member enrolled through another replica may get one a moment later), and
erasing through one replica is seen by the others once their cache entry ages out (``cache_seconds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from ledger.application.personal import PersonalProfile, new_key, seal, unseal

ConnectionFactory = Callable[[], AbstractContextManager[Any]]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS member_key (program_id TEXT NOT NULL, member_id TEXT NOT NULL,"
    " key BYTEA NOT NULL, PRIMARY KEY (program_id, member_id))",
    "CREATE TABLE IF NOT EXISTS personal_data (program_id TEXT NOT NULL, member_id TEXT NOT NULL,"
    " nonce BYTEA NOT NULL, ciphertext BYTEA NOT NULL, PRIMARY KEY (program_id, member_id))",
)


class PostgresPersonalDataStore:
    def __init__(self, connection: ConnectionFactory, *, cache_seconds: float = 60.0) -> None:
        self._connection = connection
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, PersonalProfile]] = {}
        with self._connection() as conn, conn.transaction():
            for ddl in SCHEMA:
                conn.execute(ddl)

    def save(self, program_id: str, member_id: str, profile: PersonalProfile) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO member_key VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (program_id, member_id, new_key())
            )
            row = conn.execute(
                "SELECT key FROM member_key WHERE program_id = %s AND member_id = %s", (program_id, member_id)
            ).fetchone()
            nonce, ciphertext = seal(bytes(row[0]), program_id, member_id, profile)
            conn.execute(
                "INSERT INTO personal_data VALUES (%s, %s, %s, %s) ON CONFLICT (program_id, member_id)"
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
                "SELECT k.key, p.nonce, p.ciphertext FROM personal_data p JOIN member_key k"
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
        """Destroy the member's key (crypto-shredding); the ciphertext left behind is unreadable."""
        with self._connection() as conn, conn.transaction():
            conn.execute("DELETE FROM member_key WHERE program_id = %s AND member_id = %s", (program_id, member_id))
            conn.execute("DELETE FROM personal_data WHERE program_id = %s AND member_id = %s", (program_id, member_id))
        with self._lock:
            self._cache.pop((program_id, member_id), None)

    def close(self) -> None:
        """Nothing of its own to release: connections belong to the caller's pool."""
