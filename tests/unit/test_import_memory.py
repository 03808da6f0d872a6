"""An imported member on the in-memory wiring (``memory://``): it is a member like any other afterwards (spends its
opening lots soonest expiry first, merges, verifies), and its history line says where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.application.importing import MemberImport
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd

START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
P = "sandbox"
HEADER = "member_id,identities,tier,tier_since,lots"


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    report = MemberImport(w.app, P, "old.csv").run_file(
        [
            HEADER,
            "m1,card_number:C1,silver,2026-05-01,300@2026-02-01@2027-03-31;200@2026-01-01@2027-01-15",
            "m2,card_number:C2,,,50@2026-03-01@2027-02-28",
        ],
        "csv",
    )
    assert (report.imported, report.errors) == (2, [])
    yield w
    w.app.close()


def test_a_redemption_spends_the_opening_lot_that_expires_first(wired: Wired) -> None:
    app = wired.app
    app.execute(cmd.Envelope(P, cmd.HoldPoints("m1", "H1", "O1", 250, 1_000_00), "hold"))
    app.execute(cmd.Envelope(P, cmd.CommitHold("m1", "H1"), "commit"))
    lots = {lot.lot_id: lot.remaining for lot in app.view(P, "m1").state.lots.values()}
    assert lots == {"import-1": 250, "import-2": 0}  # import-2 (15 January) went first, then 50 of import-1
    assert app.balance(P, "m1").active == 250


def test_the_history_says_where_the_opening_balance_came_from(wired: Wired) -> None:
    page = wired.app.history(P, "m1", None, 10)
    (entry,) = page.entries
    assert entry.event_type == "MemberImported" and entry.points_delta == 500 and entry.tier_after == "silver"
    assert (
        entry.summary == "imported from old.csv row 2 at tier silver: +500 points in 2 opening lots, 0 growth"
    )
    assert entry.actor.get("channel") == "import"


def test_an_imported_member_merges_and_verifies(wired: Wired) -> None:
    app = wired.app
    app.execute(cmd.Envelope(P, cmd.MergeMembers("m1", "m2", "the same person"), "merge"))
    assert app.balance(P, "m1").active == 550
    assert app.lookup(P, "card_number", "C2") == "m1"
    for member in ("m1", "m2"):
        report = app.verify_member(P, member)
        assert report.ok, report.mismatches


def test_two_rows_of_one_group_claiming_one_identity(wired: Wired) -> None:
    report = MemberImport(wired.app, P, "more.csv").run_file(
        [HEADER, "m3,card_number:SAME,,,", "m4,card_number:SAME,,,", "m5,card_number:C1,,,"], "csv"
    )
    assert report.imported == 1
    assert [(e.row, e.member_id, e.reason) for e in report.errors] == [
        (3, "m4", "IDENTITY_TAKEN"),  # given to m3 in the same group, not committed yet
        (4, "m5", "IDENTITY_TAKEN"),  # m1's, committed before
    ]
