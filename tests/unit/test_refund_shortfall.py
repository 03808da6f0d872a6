"""A refund's take-back beyond what the member still has: every missing point is recorded, the last one too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.application.clock import ManualClock
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    w.app.enroll(P, "m1", [], None, "enroll-m1")
    yield w
    w.app.close()


@pytest.mark.parametrize("spent", [1, 2])
def test_a_take_back_short_by_a_point_leaves_that_point_in_arrears(wired: Wired, spent: int) -> None:
    """The purchase earned 300 points; ``spent`` of them were redeemed; the whole refund takes back 300, so
    ``spent`` are missing and go into arrears (the reference program's clawback), one point as much as two."""
    app = wired.app
    line = OrderLine("l1", "SKU-1", "toys", 1, 300_00)
    app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", (line,), 300_00), "buy"))
    app.advance_clock(P, START + timedelta(days=8), "clock")  # the lot is active
    app.execute(cmd.Envelope(P, cmd.HoldPoints("m1", "H1", "O9", spent, 100_000), "hold"))
    app.execute(cmd.Envelope(P, cmd.CommitHold("m1", "H1", None), "commit"))
    result = app.execute(cmd.Envelope(P, cmd.RefundPurchase("m1", "O1", "R1", ()), "refund"))
    [refunded] = [e for e in result.events if isinstance(e, ev.PurchaseRefunded)]
    assert refunded.points_taken == 300
    assert sum(d.points for d in refunded.debits) == 300 - spent
    assert (refunded.arrears_added, refunded.forgiven) == (spent, 0)
    report = app.verify_member(P, "m1")
    assert report.ok, report.mismatches


def paid_with_points(app: LedgerApp, order: str, hold: str, points: int) -> None:
    """A sale of 92 CNY (which earns points of its own) with ``points`` redeemed through a committed hold."""
    execute = app.execute
    execute(cmd.Envelope(P, cmd.HoldPoints("m1", hold, order, points, 100_00), f"hold-{hold}"))
    execute(cmd.Envelope(P, cmd.CommitHold("m1", hold, None), f"commit-{hold}"))
    line = OrderLine("l1", "SKU-1", "toys", 1, 92_00)
    execute(cmd.Envelope(P, cmd.RecordPurchase("m1", order, (line,), 100_00, hold_id=hold), f"buy-{order}"))


def test_two_refunds_at_one_instant_return_points_into_lots_of_equal_expiry(wired: Wired) -> None:
    """Both orders were paid with points of a lot that has since expired: each refund credits them as a new
    lot expiring ``relot_days`` later - the same instant for both - and the second takes its order's points
    back from those new lots (its own lot has expired), the two compared by business time and order."""
    app = wired.app
    app.execute(cmd.Envelope(P, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"), "opening"))
    paid_with_points(app, "O1", "H1", 800)
    paid_with_points(app, "O2", "H2", 800)
    app.advance_clock(P, START + timedelta(days=800), "clock")  # every lot has expired
    first = app.execute(cmd.Envelope(P, cmd.RefundPurchase("m1", "O1", "R1", ()), "refund-1"))
    second = app.execute(cmd.Envelope(P, cmd.RefundPurchase("m1", "O2", "R2", ()), "refund-2"))
    [r1] = [e for e in first.events if isinstance(e, ev.PurchaseRefunded)]
    [r2] = [e for e in second.events if isinstance(e, ev.PurchaseRefunded)]
    assert r1.relot is not None and r2.relot is not None
    assert r1.relot.expires_at == r2.relot.expires_at
    assert r2.points_taken > 0
    assert {d.lot_id for d in r2.debits} == {r1.relot.lot_id}  # the earlier of the two, then its own
    report = app.verify_member(P, "m1")
    assert report.ok, report.mismatches
