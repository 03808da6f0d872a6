"""``ledger import`` as a process, on the embedded SQLite store and on PostgreSQL: killed midway (SIGKILL) and
run again, it ends with every member imported once and the exact totals; verify finds nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.application.clock import ManualClock
from ledger.application.liability import program_liability
from ledger.bootstrap import Settings, build, reference_document
from ledger.testing.postgres import fresh_schema, require_postgres

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
P = "sandbox"
ROWS = 4_000
HEADER = "member_id,identities,tier,tier_since,growth,growth_window_start,growth_window_end,lots"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with fresh_schema(require_postgres()) as url:
        yield url


def _program(url: str) -> None:
    w = build(Settings(store_url=url, reference_program=False), ManualClock(START))
    try:
        w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    finally:
        w.app.close()


def _file(tmp_path: Path) -> Path:
    lines = [HEADER] + [
        f"m{i},card_number:C-{i},gold,2026-02-01,{i},2025-12-01,2026-11-30,{i % 50 + 1}@2026-01-0{i % 9 + 1}@2027-0{i % 6 + 1}-28"
        for i in range(ROWS)
    ]
    path = tmp_path / "old.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _command(url: str, file: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ledger.entrypoints.cli",
        "--store",
        url,
        "import",
        "--program",
        P,
        *extra,
        str(file),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "LEDGER_LOG_LEVEL": "warning"}


def test_an_import_killed_midway_resumes_with_exact_totals(store: str, tmp_path: Path) -> None:
    _program(store)
    file = _file(tmp_path)
    expected_points = sum(i % 50 + 1 for i in range(ROWS))
    killed = subprocess.Popen(
        _command(store, file, "--chunk", "100", "--progress"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert killed.stderr is not None
    done = 0
    for line in killed.stderr:  # progress lines, one per chunk written
        if line.startswith("{"):
            done = json.loads(line)["imported"]
            if done >= 500:
                break
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert 500 <= done < ROWS
    w = build(Settings(store_url=store, reference_program=False), ManualClock(START))
    try:
        written = [e.type for e in w.app.store.read_all(0, 100_000)].count("MemberImported")
    finally:
        w.app.close()
    assert done <= written < ROWS, "the import was stopped midway"

    finished = subprocess.run(_command(store, file), capture_output=True, text=True, env=_env(), timeout=600)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["members"] == ROWS and report["errors"] == 0
    assert report["already_imported"] >= done and report["imported"] == ROWS - report["already_imported"]
    assert report["points"] == expected_points and report["tiers"] == {"gold": ROWS}

    again = subprocess.run(_command(store, file), capture_output=True, text=True, env=_env(), timeout=600)
    assert json.loads(again.stdout)["imported"] == 0

    w = build(Settings(store_url=store, reference_program=False), ManualClock(START))
    try:
        types = [e.type for e in w.app.store.read_all(0, 100_000)]
        assert types.count("MemberImported") == ROWS  # none twice
        liability = program_liability(w.app, P, START, START, since=START - timedelta(days=1))
        assert liability.period()["imported"] == expected_points == liability.closing.total
        assert w.app.lookup(P, "card_number", "C-3999") == "m3999"
    finally:
        w.app.close()
    verify = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--store", store, "verify", "--program", P],
        capture_output=True, text=True, env=_env(), timeout=600,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
