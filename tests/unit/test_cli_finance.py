"""``ledger replay --as-of`` and ``ledger liability`` on an embedded store written through the application."""

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
    app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", (line,), 250_00), "s1", START + timedelta(days=2)))
    app.close()
    return url


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """``main`` points structlog at the captured stderr; put the configuration back for the tests after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_replay_as_of_a_date_as_known_at_another(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", store, "replay", "m1", "--program", P, "--as-of", "2026-02-23")
    assert code == 0
    *events, last = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["MemberEnrolled", "PointsAdjusted", "PurchaseRecorded"]
    assert last["balance"]["active"] == 1_000 and last["balance"]["pending"] == 250
    assert last["as_of"] == "2026-02-23T15:59:59.999999+00:00"  # the end of 23 February in Shanghai
    code, out, _ = run(capsys, "--store", store, "replay", "m1", "--program", P, "--as-of", "2026-02-23",
                       "--as-known-at", "2026-02-24T10:00:00+08:00")  # fmt: skip
    assert json.loads(out.splitlines()[-1])["balance"]["pending"] == 0  # the late sale was recorded on the 25th


def test_liability_as_csv_and_json(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--store", store, "liability", "--program", P, "--format", "csv", "--since", "2026-02-20")
    assert code == 0
    rows = {(r["section"], r["name"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("outstanding", "total")]["points"] == "1250" and rows[("outstanding", "total")]["value_fen"] == "1250"
    assert rows[("outstanding", "pending")]["points"] == "250"
    assert rows[("movement", "issued")]["points"] == "250"
    assert rows[("breakage", "ratio")]["points"] == "0/1"
    code, out, _ = run(capsys, "--store", store, "liability", "--program", P, "--as-of", "2026-02-21")
    document = json.loads(out)
    total = [line for line in document["lines"] if line["name"] == "total"]
    assert total == [{"section": "outstanding", "name": "total", "points": 1_000, "value_fen": 1_000}]


def test_a_time_after_the_clock_is_refused_naming_the_option(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--store", store, "liability", "--program", P, "--as-of", "2026-03-30")
    assert code == 2 and "as_of" in err
    with pytest.raises(SystemExit):
        cli.main(["--store", store, "liability", "--program", P, "--as-of", "2026-02-21T10:00:00"])
