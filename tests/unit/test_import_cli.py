"""``ledger import`` on the embedded SQLite store: dry run, error file, idempotent re-run, resume after an
interruption, imported values kept as given, expiry at the given date, the liability's imported movement."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from ledger.application.clock import ManualClock
from ledger.application.importing import ImportReport, MemberImport
from ledger.application.liability import program_liability
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints import cli
from policies import OrderLine

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"
HEADER = "member_id,identities,consent,birth_month,tier,tier_since,growth,growth_window_start,growth_window_end,lots"


def good_rows(n: int, first: int = 1) -> list[str]:
    """``n`` members: member i has i*10 points expiring at the end of January 2027 and 7 more at the end of June."""
    return [
        f"g{i},card_number:G-{i},,,silver,2026-06-01,2500,2025-12-01,2026-11-30,{i * 10}@2026-01-05@2027-01-31;7@2026-07-01@2027-06-30"
        for i in range(first, first + n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    w = build(Settings(store_url=url, reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    w.app.enroll(P, "e1", [("card_number", "TAKEN")], None, "enroll-e1")
    w.app.close()
    return url


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def wired(url: str) -> Wired:
    return build(Settings(store_url=url, reference_program=False), ManualClock(START))


def events_in(url: str) -> list[str]:
    w = wired(url)
    try:
        return [e.type for e in w.app.store.read_all(0, 100_000)]
    finally:
        w.app.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {}), out.err


def write(tmp_path: Path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


BAD = [
    "e1,card_number:NEW,,,,,,,,",  # row 5: enrolled in the program before (not by this import)
    "b1,card_number:TAKEN,,,,,,,,",  # row 6: an identity of e1
    "b2,,,,platinum,,,,,",  # row 7: no such tier
    "g1,card_number:OTHER,,,,,,,,",  # row 8: the file lists g1 twice
    "b3,,,,,,,,,5@2025-01-01@2025-12-31",  # row 9: a lot that expired already
    "b4,,,5,,,,,,",  # row 10: personal data without consent
]


def test_dry_run_prints_the_totals_and_writes_nothing(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "old.csv", [HEADER, *good_rows(3), *BAD])
    before = events_in(store)
    code, report, _ = run(capsys, "--store", store, "import", "--program", P, "--dry-run", file)
    assert code == 1
    assert report["dry_run"] is True and report["members"] == 3 and report["errors"] == 6
    assert report["points"] == 10 + 20 + 30 + 3 * 7
    assert report["points_by_expiry_month"] == {"2027-01": 60, "2027-06": 21}
    assert report["tiers"] == {"silver": 3}
    assert events_in(store) == before


def test_bad_rows_go_to_the_error_file_and_never_block_the_good_ones(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "old.csv", [HEADER, *good_rows(3), *BAD])
    errors = tmp_path / "errors.csv"
    code, report, _ = run(capsys, "--store", store, "import", "--program", P, "--errors", str(errors), file)
    assert code == 1 and report["imported"] == 3 and report["errors"] == 6
    rows = list(csv.DictReader(errors.open(encoding="utf-8")))
    assert [(r["row"], r["member_id"], r["field"], r["reason"]) for r in rows] == [
        ("5", "e1", "member_id", "MEMBER_EXISTS"),
        ("6", "b1", "identities", "IDENTITY_TAKEN"),
        ("7", "b2", "tier", "INVALID_ARGUMENT"),
        ("8", "g1", "member_id", "DUPLICATE_ROW"),
        ("9", "b3", "lots[0].expires_at", "INVALID_ARGUMENT"),
        ("10", "b4", "consent", "INVALID_ARGUMENT"),
    ]
    assert all(r["message"] for r in rows)
    # The dry run of the same file found exactly these (it decides the same way).
    dry_errors = tmp_path / "dry.csv"
    run(capsys, "--store", store, "import", "--program", P, "--dry-run", "--errors", str(dry_errors), file)
    dry = [(r["row"], r["reason"]) for r in csv.DictReader(dry_errors.open(encoding="utf-8"))]
    assert dry[0] == ("5", "MEMBER_EXISTS") and ("8", "DUPLICATE_ROW") in dry


def test_a_re_run_imports_nothing_twice(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "old.csv", [HEADER, *good_rows(5)])
    code, first, _ = run(capsys, "--store", store, "import", "--program", P, "--chunk", "2", file)
    assert code == 0 and first["imported"] == 5
    after_first = events_in(store)
    assert after_first.count("MemberImported") == 5
    code, again, _ = run(capsys, "--store", store, "import", "--program", P, "--chunk", "2", file)
    assert code == 0 and again["imported"] == 0 and again["already_imported"] == 5
    assert again["points"] == first["points"] == 150 + 35
    assert events_in(store) == after_first
    # The same members from another file are members that already exist.
    other = write(tmp_path, "other.csv", [HEADER, *good_rows(1)])
    code, report, _ = run(capsys, "--store", store, "import", "--program", P, other)
    assert code == 1 and report["imported"] == 0 and report["errors"] == 1
    assert cli.main(["--store", store, "verify", "--program", P]) == 0


def test_an_interrupted_import_resumes_with_exact_totals(store: str, tmp_path: Path) -> None:
    lines = [HEADER, *good_rows(10)]

    class Interrupted(Exception):
        pass

    def stop_after_two_chunks(report: ImportReport) -> None:
        if report.imported >= 6:
            raise Interrupted

    w = wired(store)
    with pytest.raises(Interrupted):
        MemberImport(w.app, P, "old.csv", chunk=3, after_chunk=stop_after_two_chunks).run_file(lines, "csv")
    w.app.close()
    assert events_in(store).count("MemberImported") == 6
    w = wired(store)
    try:
        report = MemberImport(w.app, P, "old.csv", chunk=3).run_file(lines, "csv")
        assert (report.imported, report.already_imported, report.errors) == (4, 6, [])
        assert report.points == sum(i * 10 + 7 for i in range(1, 11))
        liability = program_liability(w.app, P, START, START, since=START - timedelta(days=1))
        assert liability.period()["imported"] == report.points == liability.closing.total
        assert liability.closing.members == 11
    finally:
        w.app.close()
    assert events_in(store).count("MemberImported") == 10


def test_imported_values_are_kept_and_the_lot_expires_at_its_date(store: str, tmp_path: Path) -> None:
    w = wired(store)
    try:
        lines = [
            HEADER,
            "m1,,,,gold,2026-03-01,1200,2025-12-01,2026-11-30,1000@2026-01-10@2027-01-20;500@2026-06-01@2027-06-30",
        ]
        report = MemberImport(w.app, P, "old.csv").run_file(lines, "csv")
        assert report.imported == 1
        tier = w.app.view(P, "m1").state.tier
        assert tier == "gold"  # growth 1,200 is far below Gold's 5,000: still Gold until the review
        balance = w.app.balance(P, "m1")
        assert (balance.active, balance.pending) == (1_500, 0)
        # A sale after the import does not re-judge the tier either (1,200 + 100 growth).
        line = cmd.RecordPurchase("m1", "O1", (OrderLine("l0", "SKU", "toys", 1, 100_00),), 100_00)
        w.app.execute(cmd.Envelope(P, line, "sale-1"))
        assert w.app.view(P, "m1").state.tier == "gold"
        # Usable through 20 January (the policy would have kept it to the end of January).
        w.app.advance_clock(P, datetime(2027, 1, 20, 15, 59, tzinfo=UTC), "c1")  # 23:59 on 20 Jan, Shanghai
        # The sale earned at Gold's x1.5 (150 points, active since 8 December).
        assert w.app.balance(P, "m1").active == 1_650
        w.app.advance_clock(P, datetime(2027, 1, 20, 16, 0, tzinfo=UTC), "c2")  # 21 January, 00:00
        assert w.app.balance(P, "m1").active == 650
        lots = {lot.lot_id: lot for lot in w.app.view(P, "m1").state.lots.values()}
        assert lots["import-1"].expired and not lots["import-2"].expired
    finally:
        w.app.close()
    assert cli.main(["--store", store, "verify", "--program", P]) == 0


def test_json_lines_with_a_profile_and_a_paid_term(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = {
        "member_id": "j1", "identities": [{"kind": "open_id", "value": "o-1"}], "consent": True, "birth_month": 12,
        "membership_plan": "black_gold", "membership_start": "2026-05-01", "membership_end": "2027-04-30",
        "lots": [{"points": 300, "earned_at": "2026-02-01", "expires_at": "2027-02-28"}],
    }  # fmt: skip
    file = write(tmp_path, "old.jsonl", [json.dumps(row)])
    code, report, _ = run(capsys, "--store", store, "import", "--program", P, file)
    assert code == 0 and report["memberships"] == 1 and report["points"] == 300
    w = wired(store)
    try:
        assert w.app.lookup(P, "open_id", "o-1") == "j1"
        profile = w.app.personal.load(P, "j1")
        assert profile is not None and profile.birth_month == 12
        assert w.app.view(P, "j1").state.active_plans(START) == ("black_gold",)
        (entry,) = w.app.replay(P, "j1")
        payload = json.loads(entry.stored.payload)
        assert (entry.stored.type, payload["source"], payload["row"]) == ("MemberImported", "old.jsonl", 1)
        assert "o-1" not in entry.stored.payload.decode()  # identities are keyed digests in the log
    finally:
        w.app.close()


def test_an_unknown_program_is_refused(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "old.csv", [HEADER])
    assert cli.main(["--store", store, "import", "--program", "nope", file]) == 2
    assert "nope" in capsys.readouterr().err
