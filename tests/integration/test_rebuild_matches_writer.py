"""``ledger rebuild-projections`` writes exactly the rows the writer's incremental projection wrote.

The real write path on each store (decide, evolve, the projector in the append's transaction) records a varied
log - purchases, an activation and a tier upgrade on the test clock, holds committed and released, refunds,
adjustments into arrears and back, a merge and an erasure - then :func:`rebuild_projections` (what the command
runs: the production fold, ``history_fold``) rebuilds every read model from the log, in this process or in two
worker processes. Every table is then equal, row for row, to what the writer had projected.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.personal import PersonalProfile
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints import cli
from ledger.entrypoints.rebuild import rebuild_projections
from policies import OrderLine
from projections.tables import RETIRED_TABLES, TABLES

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "p"


@pytest.fixture
def wired(store_url: str) -> Iterator[Wired]:
    w = build(Settings(store_url=store_url, reference_program=False), ManualClock(START))
    w.app.create_program(P, "P", reference_document(), "test", START, "create")
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str) -> None:
    w.app.execute(cmd.Envelope(P, command, key))


def sale(order: str, fen: int, *lines: tuple[str, str]) -> cmd.RecordPurchase:
    chosen = lines or (("LS-FORMULA-900G", "infant_formula"),)
    order_lines = tuple(OrderLine(f"l{i}", sku, cat, 1, fen) for i, (sku, cat) in enumerate(chosen))
    return cmd.RecordPurchase(order[1:], order, order_lines, fen * len(order_lines))


def record_a_varied_log(w: Wired) -> None:
    for m in ("m1", "m2", "m3", "m4", "m5"):
        profile = PersonalProfile(birth_month=5, phone="+8613700000000", consent=True) if m == "m5" else None
        w.app.enroll(P, m, [("card_number", f"C-{m}")], profile, f"enroll-{m}")
    run(w, cmd.RecordPurchase("m1", "o1", (OrderLine("1", "LS-FORMULA-900G", "infant_formula", 2, 150_000),),
                              300_000), "buy-1")  # fmt: skip
    run(w, cmd.RecordPurchase("m2", "o2", (OrderLine("1", "SKU-1", "toys", 1, 30_000),
                                           OrderLine("2", "SKU-2", "toys", 3, 9_000)), 39_000), "buy-2")  # fmt: skip
    run(w, cmd.AdjustPoints("m3", 700, "GOODWILL", "opening", "op"), "adjust-1")
    w.app.advance_clock(P, START + timedelta(days=8), "clock-1")  # the purchases' lots activate
    for i in range(5):  # growth enough for a tier upgrade
        line = OrderLine("1", "LS-FORMULA-900G", "infant_formula", 1, 200_000)
        run(w, cmd.RecordPurchase("m1", f"o1-{i}", (line,), 200_000), f"buy-1-{i}")
    run(w, cmd.HoldPoints("m1", "H1", "o9", 300, 100_000), "hold-1")
    run(w, cmd.CommitHold("m1", "H1", None), "commit-1")
    run(w, cmd.HoldPoints("m2", "H2", "o8", 50, 100_000), "hold-2")
    run(w, cmd.ReleaseHold("m2", "H2"), "release-2")
    run(w, cmd.RefundPurchase("m2", "o2", "R1", (cmd.RefundLine("1", 10_000),)), "refund-1")
    run(w, cmd.RefundPurchase("m1", "o1", "R2", ()), "refund-2")
    run(w, cmd.AdjustPoints("m3", -900, "CORRECTION", "taken back", "op", allow_arrears=True), "adjust-2")
    run(w, cmd.AdjustPoints("m3", 250, "GOODWILL", "repaid", "op"), "adjust-3")
    run(w, cmd.AdjustPoints("m4", 40, "GOODWILL", "before the merge", "op"), "adjust-4")
    run(w, cmd.MergeMembers("m1", "m4"), "merge-1")  # m4's identity now finds m1
    run(w, cmd.EraseMember("m5", "subject request", "DSR-1"), "erase-1")  # no identity finds m5 any more
    w.app.advance_clock(P, START + timedelta(days=40), "clock-2")
    run(w, cmd.RecordPurchase("m3", "o3", (OrderLine("1", "SKU-1", "toys", 1, 12_345),), 12_345), "buy-3")
    run(w, cmd.CreateHousehold("m1"), "household-1")  # the standing row's household and exchanges
    run(w, cmd.JoinHousehold("m3", "m1"), "join-3")
    run(w, cmd.TransferPoints("m1", "m3", "T1", 100), "transfer-1")
    run(w, cmd.ExchangePoints("m1", "X1", "coupon_20"), "exchange-1")


def dump(w: Wired) -> dict[str, list[tuple[Any, ...]]]:
    with w.backend.read_connection() as conn:
        return {t: sorted((tuple(r) for r in conn.execute(f"SELECT * FROM {t}")), key=repr) for t in TABLES}


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "2-workers"])
def test_a_rebuild_writes_the_rows_the_writer_projected(wired: Wired, workers: int) -> None:
    record_a_varied_log(wired)
    projected = dump(wired)
    assert len(projected["history"]) >= 20
    assert {row[4] for row in projected["history"]} >= {
        "MemberEnrolled", "PurchaseRecorded", "LotActivated", "TierChanged", "PointsHeld", "HoldCommitted",
        "HoldReleased", "PurchaseRefunded", "PointsAdjusted", "MemberMerged", "MemberAbsorbed", "MemberErased",
    }  # fmt: skip
    # m4's card moved to m1 by the merge; m5's is gone with its erasure
    assert sorted(row[2] for row in projected["identity"]) == ["m1", "m1", "m2", "m3"]
    report = rebuild_projections(wired.app, wired.backend, workers)
    assert report["workers"] == workers
    assert report["history_rows"] == len(projected["history"])
    rebuilt = dump(wired)
    for table in TABLES:
        assert rebuilt[table] == projected[table], table


def dump_file(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    finally:
        conn.close()


def test_a_store_of_an_earlier_release_loses_its_retired_tables_and_rebuilds_the_same(tmp_path: Path) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path}/ledger.db", reference_program=False)
    w = build(settings, ManualClock(START))
    w.app.create_program(P, "P", reference_document(), "test", START, "create")
    record_a_varied_log(w)
    w.app.close()
    projected = dump_file(tmp_path / "ledger.db")
    standing = {row[1]: row[3] for row in projected["standing"]}
    assert '"X1"' in standing["m1"] and '"T1"' in standing["m1"] and '"m3"' in standing["m1"]
    with sqlite3.connect(tmp_path / "ledger.db") as conn:  # as an earlier release left the file
        for name in RETIRED_TABLES:
            conn.execute(f"CREATE TABLE {name} (program_id TEXT, member_id TEXT)")
            conn.execute(f"INSERT INTO {name} VALUES ('p', 'm1')")
    w = build(settings, ManualClock(START + timedelta(days=40)))
    try:
        with sqlite3.connect(tmp_path / "ledger.db") as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not tables & set(RETIRED_TABLES) and tables >= set(TABLES)
        rebuild_projections(w.app, w.backend)
        assert dump_file(tmp_path / "ledger.db") == projected
    finally:
        w.app.close()
@pytest.mark.parametrize("workers", ["0", "3"])
def test_the_command_folds_in_as_many_workers_as_asked(
    wired: Wired, store_url: str, workers: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `main` would point the ledger's (cached) loggers at this test's captured stderr, closed after it
    monkeypatch.setattr("ledger.entrypoints.log_output.configure", lambda *args, **kwargs: None)
    record_a_varied_log(wired)
    projected = dump(wired)
    assert cli.main(["--store", store_url, "rebuild-projections", "--workers", workers]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["workers"] == int(workers) and report["members"] == 5
    assert dump(wired) == projected
