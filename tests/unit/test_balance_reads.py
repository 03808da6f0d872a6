"""GetBalance's answer from the read models: the same figures as the member's state, and the writer when it must.

A balance is read from the read-model tables (no trip to the writer) when the member has no time-driven work
due and its row has reached the caller's ``min_version``; otherwise the writer applies the due work first. These
tests stop the writer to prove which path answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.application.clock import ManualClock
from ledger.application.results import CommandResult
from ledger.application.writer import StoreUnavailable
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.queries import balance_figures
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def wired(clock: ManualClock) -> Iterator[Wired]:
    """A program on the real clock (the injected manual one): time passes without anything being run."""
    w = build(Settings(store_url="memory://", reference_program=False), clock)
    w.app.create_program(P, "Sandbox", reference_document(), "real", None, "create")
    w.app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str) -> CommandResult:
    return w.app.execute(cmd.Envelope(P, command, key))


def purchase(order_id: str, fen: int) -> cmd.RecordPurchase:
    return cmd.RecordPurchase("m1", order_id, (OrderLine("l1", "SKU-1", "toys", 1, fen),), fen)


def from_state(w: Wired) -> object:
    view = w.app.view(P, "m1")
    return balance_figures(view.state, view.now)


def test_with_nothing_due_the_balance_comes_from_the_read_models_without_the_writer(wired: Wired) -> None:
    run(wired, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "opening", "op1"), "a1")
    run(wired, cmd.HoldPoints("m1", "H1", "O9", 300, 100_000, ttl_seconds=900), "h1")
    run(wired, purchase("O1", 123_45), "p1")
    expected = from_state(wired)
    wired.app.writer.stop()
    got = wired.app.balance(P, "m1")
    assert got == expected
    assert (got.active, got.pending, got.held, got.available) == (2_000, 123, 300, 1_700)
    assert got.next_expiry_points == 2_123 and got.next_expiry_at is not None  # both lots expire with March 2027


def test_points_expiring_within_30_days_are_counted_at_the_time_asked(wired: Wired, clock: ManualClock) -> None:
    run(wired, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "opening", "op1"), "a1")
    [lot] = wired.app.view(P, "m1").state.lots.values()
    clock.set(lot.expires_at - timedelta(days=30))  # the window [now, now + 30 days) ends just at the expiry
    assert wired.app.balance(P, "m1") == from_state(wired)  # (the writer runs the year's grants and reviews first)
    wired.app.writer.stop()  # from here nothing is due: the read models answer
    assert wired.app.balance(P, "m1").expiring_soon == 0
    clock.set(lot.expires_at - timedelta(days=30) + timedelta(seconds=1))
    assert wired.app.balance(P, "m1").expiring_soon == 2_000


def test_a_member_with_work_due_is_answered_by_the_writer_after_that_work(wired: Wired, clock: ManualClock) -> None:
    run(wired, purchase("O1", 500_00), "p1")
    clock.set(START + timedelta(days=7, minutes=1))  # the lot's activation is due; no scheduler has run
    row = wired.backend.reads.balance(P, "m1")  # type: ignore[attr-defined]
    assert (row.pending, row.active) == (500, 0)  # the read model alone would still say pending
    got = wired.app.balance(P, "m1")
    assert (got.pending, got.active) == (0, 500)
    assert got == from_state(wired)


def test_an_expired_lot_is_never_shown_as_spendable(wired: Wired, clock: ManualClock) -> None:
    run(wired, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "opening", "op1"), "a1")
    [lot] = wired.app.view(P, "m1").state.lots.values()
    clock.set(lot.expires_at)
    got = wired.app.balance(P, "m1")
    assert (got.active, got.available, got.lifetime_expired) == (0, 0, 2_000)


def test_a_hold_that_timed_out_is_not_shown_as_held(wired: Wired, clock: ManualClock) -> None:
    run(wired, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "opening", "op1"), "a1")
    run(wired, cmd.HoldPoints("m1", "H1", "O9", 300, 100_000, ttl_seconds=900), "h1")
    clock.set(START + timedelta(seconds=900))
    got = wired.app.balance(P, "m1")
    assert (got.held, got.available) == (0, 2_000)


def test_a_min_version_the_read_model_has_not_reached_goes_to_the_writer(wired: Wired) -> None:
    written = run(wired, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "opening", "op1"), "a1")
    wired.app.writer.stop()
    assert wired.app.balance(P, "m1", min_version=written.version).version == written.version
    with pytest.raises(StoreUnavailable):  # only the (stopped) writer could answer for a later version
        wired.app.balance(P, "m1", min_version=written.version + 1)


def test_an_unknown_member_is_not_found(wired: Wired) -> None:
    from ledger.domain.errors import NotFound

    with pytest.raises(NotFound):
        wired.app.balance(P, "nobody")
