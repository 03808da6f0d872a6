"""Feed checkpoints in SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.adapters.postgres.checkpoint import PostgresCheckpoints
from ledger.adapters.sqlite.checkpoint import SqliteCheckpoints
from ledger.application.ports import CheckpointStore

PG_DSN = os.environ.get("LEDGER_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test")


def exercise(checkpoints: CheckpointStore) -> None:
    assert checkpoints.load("nats") == 0
    checkpoints.save("nats", 41)
    checkpoints.save("other", 7)
    checkpoints.save("nats", 42)
    assert (checkpoints.load("nats"), checkpoints.load("other")) == (42, 7)
    checkpoints.save("nats", 3)  # an operator may move a checkpoint back to republish
    assert checkpoints.load("nats") == 3
    checkpoints.save("big", 2**40)
    assert checkpoints.load("big") == 2**40


def test_sqlite_checkpoints_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "l.db")
    first = SqliteCheckpoints.at(path)
    exercise(first)
    first.close()
    second = SqliteCheckpoints.at(path)
    assert second.load("nats") == 3
    second.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN!r}: {error}")
    schema = f"feed_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.mark.postgres
def test_postgres_checkpoints(pg_schema: str) -> None:
    import psycopg

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(PG_DSN, options=f"-c search_path={pg_schema}")

    exercise(PostgresCheckpoints(connect))
    assert PostgresCheckpoints(connect).load("nats") == 3
    with connect() as conn:
        row = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'feed_checkpoint' AND column_name = 'position'",
            (pg_schema,),
        ).fetchone()
    assert row == ("bigint",)
