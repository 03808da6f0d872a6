"""The vault keeps the members' data keys apart from the ciphertexts, and moves them out of an older vault.

An older vault held ``member_key`` beside ``personal_data`` (one SQLite file, one PostgreSQL schema). Opened now,
its profiles still read, the keys are in the key file or the keys schema, and the old table is gone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledger.adapters.postgres.personal import PostgresPersonalDataStore, keys_schema
from ledger.adapters.sqlite.personal import PersonalDataStore, key_file
from ledger.application.personal import PersonalProfile, new_key, seal
from ledger.testing.postgres import fresh_schema, require_postgres

PROFILE = PersonalProfile(birth_month=6, baby_birth_date="2025-11-02", phone="+8613800138000", consent=True)
OLD_TABLES = (
    "CREATE TABLE member_key (program_id TEXT, member_id TEXT, key BLOB, PRIMARY KEY (program_id, member_id))",
    "CREATE TABLE personal_data (program_id TEXT, member_id TEXT, nonce BLOB, ciphertext BLOB,"
    " PRIMARY KEY (program_id, member_id))",
)


def test_an_older_sqlite_vault_moves_its_keys_to_the_key_file(tmp_path: Path) -> None:
    vault = str(tmp_path / "ledger.personal.db")
    key = new_key()
    nonce, ciphertext = seal(key, "p", "m1", PROFILE)
    with contextlib.closing(sqlite3.connect(vault)) as old:
        for ddl in OLD_TABLES:
            old.execute(ddl)
        old.execute("INSERT INTO member_key VALUES ('p', 'm1', ?)", (key,))
        old.execute("INSERT INTO personal_data VALUES ('p', 'm1', ?, ?)", (nonce, ciphertext))
        old.commit()
    store = PersonalDataStore(vault)
    try:
        assert store.load("p", "m1") == PROFILE
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(vault)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"personal_data"}
    assert key not in Path(vault).read_bytes()  # the dropped table's pages were overwritten
    with contextlib.closing(sqlite3.connect(key_file(vault))) as keys:
        assert keys.execute("SELECT key FROM member_key").fetchall() == [(key,)]
    assert key_file(vault) == str(tmp_path / "ledger.personal.keys.db")


def test_an_older_postgres_vault_moves_its_keys_to_the_keys_schema() -> None:
    key = new_key()
    nonce, ciphertext = seal(key, "p", "m1", PROFILE)
    with fresh_schema(require_postgres()) as url, psycopg.connect(url, autocommit=True) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "CREATE TABLE member_key (program_id TEXT, member_id TEXT, key BYTEA, PRIMARY KEY (program_id, member_id))"
        )
        conn.execute(
            "CREATE TABLE personal_data (program_id TEXT, member_id TEXT, nonce BYTEA, ciphertext BYTEA,"
            " PRIMARY KEY (program_id, member_id))"
        )
        conn.execute("INSERT INTO member_key VALUES ('p', 'm1', %s)", (key,))
        conn.execute("INSERT INTO personal_data VALUES ('p', 'm1', %s, %s)", (nonce, ciphertext))

        @contextlib.contextmanager
        def connection() -> Iterator[psycopg.Connection[Any]]:
            with psycopg.connect(url, autocommit=True) as c:
                yield c

        store = PostgresPersonalDataStore(connection)
        assert store.load("p", "m1") == PROFILE
        assert conn.execute("SELECT to_regclass(%s)", (f"{schema}.member_key",)).fetchone() == (None,)
        keys = sql.Identifier(keys_schema(schema))
        moved = conn.execute(sql.SQL("SELECT key FROM {}.member_key").format(keys)).fetchall()
        assert [bytes(r[0]) for r in moved] == [key]
        store.erase("p", "m1")
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}.member_key").format(keys)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM personal_data").fetchone() == (0,)
