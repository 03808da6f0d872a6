"""Altering or deleting a stored event makes ``ledger verify`` fail and name the member and position.

Runs on each backend: the rows are altered behind the ledger's back with the database's own client.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build_app, reference_document, sqlite_path, store_kind
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(store_url: str) -> str:
    app = build_app(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))
    try:
        app.create_program("audit", "Audit", reference_document(), "test", START, "c")
        for m in ("alice", "bob"):
            app.enroll("audit", m, [("card_number", m)], None, f"e-{m}")
            line = OrderLine("l1", "SKU", "toys", 1, 12_345)
            app.execute(cmd.Envelope("audit", cmd.RecordPurchase(m, "O1", (line,), 12_345), f"p-{m}"))
    finally:
        app.close()
    return store_url


def tamper(store_url: str, sqlite_sql: str, postgres_sql: str) -> None:
    """Run a statement straight against the store's database, as someone with write access could."""
    if store_kind(store_url) == "sqlite":
        with sqlite3.connect(sqlite_path(store_url)) as conn:
            assert conn.execute(sqlite_sql).rowcount == 1
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        assert conn.execute(postgres_sql).rowcount == 1


def verify(store_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--store", store_url, "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_untouched_log_verifies(db: str) -> None:
    done = verify(db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 ok, 0 failed" in done.stdout


def test_altered_payload_is_named(db: str) -> None:
    tamper(
        db,
        "UPDATE events SET payload = CAST(replace(payload, '\"points\":123', '\"points\":999') AS BLOB)"
        " WHERE stream_id = 'member-audit-bob' AND version = 2",
        "UPDATE events SET payload = convert_to(replace(convert_from(payload, 'UTF8'), '\"points\":123',"
        " '\"points\":999'), 'UTF8') WHERE stream_id = 'member-audit-bob' AND version = 2",
    )
    done = verify(db)
    assert done.returncode == 1
    assert "member=bob" in done.stdout and "version 2" in done.stdout
    assert "member=alice" not in done.stdout


def test_deleted_event_is_named(db: str) -> None:
    statement = "DELETE FROM events WHERE stream_id = 'member-audit-alice' AND version = 1"
    tamper(db, statement, statement)
    done = verify(db)
    assert done.returncode == 1
    assert "member=alice" in done.stdout


def test_a_stream_cut_short_at_its_last_event_is_named(db: str) -> None:
    """Removing a member's latest event (a redemption undone behind the ledger's back, say) leaves a chain
    that is intact up to where it stops: the stream's head, which the store keeps with the stream, tells."""
    statement = "DELETE FROM events WHERE stream_id = 'member-audit-bob' AND version = 2"
    tamper(db, statement, statement)
    done = verify(db)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "member=bob" in done.stdout and "version 2" in done.stdout
    assert "member=alice" not in done.stdout
