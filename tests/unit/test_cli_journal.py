"""``ledger journal`` on an embedded store written through the application."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints import cli
from policies import OrderLine

START = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    w = build(Settings(store_url=url, reference_program=False), ManualClock(START))
    app = w.app
    app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
    app.execute(cmd.Envelope(P, cmd.AdjustPoints("m1", 1_000, "GOODWILL", "opening", "op1"), "a1"))
    app.advance_clock(P, START + timedelta(days=5), "c1")
    line = OrderLine("l0", "SKU-1", "toys", 1, 250_00)
    app.execute(
        cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", (line,), 250_00), "s1", START + timedelta(days=2))
    )
    app.execute(cmd.Envelope(P, cmd.HoldPoints("m1", "H1", "OH1", 300, 100_000_00), "h1"))
    app.execute(cmd.Envelope(P, cmd.CommitHold("m1", "H1", None), "h1c"))
    app.close()
    return url


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_journal_of_a_period_as_csv(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--store", store, "journal", "--program", P, "--from", "2026-02-21")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    lines = [r for r in rows if r["record"] == "line"]
    # The adjustment of the 20th is before the period; the late sale of the 22nd and the redemption are in it.
    assert [(r["date"], r["kind"], r["points"], r["amount_fen"]) for r in lines] == [
        ("2026-02-22", "issued", "250", "250"), ("2026-02-25", "redeemed", "300", "300")]  # fmt: skip
    assert lines[0]["debit"] == "points_issued_clearing" and lines[0]["credit"] == "contract_liability_points"
    assert (
        lines[1]["debit"] == "contract_liability_points" and lines[1]["credit"] == "revenue_points_redeemed"
    )
    assert lines[0]["event_id"] and lines[0]["stream_version"] == "3" and lines[0]["position"]
    totals = {r["kind"]: r for r in rows if r["record"] == "total"}
    assert totals["issued"]["points"] == "250" and totals["expired"]["points"] == "0"
    bounds = {r["record"]: int(r["points"]) for r in rows if r["record"] in ("opening", "closing")}
    assert bounds == {"opening": 1_000, "closing": 1_000 + 250 - 300}


def test_journal_as_jsonl_and_refusals(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "--store", store, "journal", "--program", P, "--from", "2026-02-20", "--format", "jsonl"
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in records if r["record"] == "line"] == ["adjusted_in", "issued", "redeemed"]
    code, _, err = run(
        capsys, "--store", store, "journal", "--program", P, "--from", "2026-02-20", "--to", "2027-01-01"
    )
    assert code == 2 and "to" in err and "clock" in err
    code, _, err = run(
        capsys, "--store", store, "journal", "--program", P, "--from", "2026-02-24", "--to", "2026-02-22"
    )
    assert code == 2 and "from" in err
