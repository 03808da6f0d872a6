"""Altering or deleting a stored event makes ``ledger verify`` fail and name the member and position."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    app = build_app(Settings(store_url=f"sqlite:///{path}", reference_program=False), clock=ManualClock(START))
    try:
        app.create_program("audit", "Audit", reference_document(), "test", START, "c")
        for m in ("alice", "bob"):
            app.enroll("audit", m, [("card_number", m)], None, f"e-{m}")
            line = OrderLine("l1", "SKU", "toys", 1, 12_345)
            app.execute(cmd.Envelope("audit", cmd.RecordPurchase(m, "O1", (line,), 12_345), f"p-{m}"))
    finally:
        app.close()
    return path


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", "--store", f"sqlite:///{path}", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_untouched_log_verifies(db: Path) -> None:
    done = verify(db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 ok, 0 failed" in done.stdout


def test_altered_payload_is_named(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE events SET payload = CAST(replace(payload, '\"points\":123', '\"points\":999') AS BLOB)"
            " WHERE stream_id = 'member-audit-bob' AND version = 2"
        )
    done = verify(db)
    assert done.returncode == 1
    assert "member=bob" in done.stdout and "version 2" in done.stdout
    assert "member=alice" not in done.stdout


def test_deleted_event_is_named(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE stream_id = 'member-audit-alice' AND version = 1")
    done = verify(db)
    assert done.returncode == 1
    assert "member=alice" in done.stdout
