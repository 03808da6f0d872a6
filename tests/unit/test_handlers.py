"""The whole application on the in-memory wiring (``memory://``): commands in, events and read models out.

No server, no file to keep: the same bootstrap as ``ledger serve`` with the in-memory log, so these run in
milliseconds each and say what the write path promises - earning, activation on the clock, holds, refunds,
retries answered once - and that the read models follow every write.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.results import CommandResult
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import Conflict, Refusal
from policies import OrderLine
from tests.unit.writer_groups import in_one_group

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    w.app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str) -> object:
    return w.app.execute(cmd.Envelope(P, command, key))


def purchase(order_id: str, *lines: tuple[str, str, int]) -> cmd.RecordPurchase:
    order_lines = tuple(OrderLine(f"l{i}", sku, category, 1, fen) for i, (sku, category, fen) in enumerate(lines))
    return cmd.RecordPurchase("m1", order_id, order_lines, sum(ln.paid_fen for ln in order_lines))


def balance(w: Wired) -> tuple[int, int, int]:
    row = w.backend.reads.balance(P, "m1")  # type: ignore[attr-defined]
    assert row is not None
    return row.pending, row.active, row.held


def test_a_purchase_earns_pending_points_and_the_read_model_has_them(wired: Wired) -> None:
    run(wired, purchase("O1", ("SKU-1", "toys", 123_45), ("F-1", "infant_formula", 99_99)), "p1")
    # 123 + floor(99.99 / 2) = 123 + 49, pending for 7 days
    assert balance(wired) == (172, 0, 0)
    assert wired.app.view(P, "m1").state.pending == 172


def test_points_activate_on_the_program_clock_and_expire_at_the_end_of_the_month(wired: Wired) -> None:
    run(wired, purchase("O1", ("SKU-1", "toys", 500_00)), "p1")
    wired.app.advance_clock(P, START + timedelta(days=7), "clock-1")
    assert balance(wired) == (0, 500, 0)
    [lot] = wired.app.view(P, "m1").state.lots.values()
    # active 2026-03-17 local: expires at the end of 2027-03-31 local (2027-04-01 00:00 +08:00)
    assert lot.expires_at == datetime(2027, 3, 31, 16, 0, tzinfo=UTC)


def test_a_hold_reserves_points_and_a_commit_spends_them(wired: Wired) -> None:
    run(wired, cmd.AdjustPoints("m1", 1_000, "GOODWILL", "opening", "op1"), "a1")
    run(wired, cmd.HoldPoints("m1", "H1", "O9", 300, 100_000), "h1")
    assert balance(wired) == (0, 1_000, 300)
    run(wired, cmd.CommitHold("m1", "H1", None), "c1")
    assert balance(wired) == (0, 700, 0)


def test_a_hold_beyond_the_order_cap_is_refused_with_its_reason(wired: Wired) -> None:
    run(wired, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op1"), "a1")
    with pytest.raises(Refusal) as refused:
        # a Regular member may pay at most 10% of a 100.00 CNY order: 1,000 points
        run(wired, cmd.HoldPoints("m1", "H1", "O9", 1_001, 100_00), "h1")
    assert refused.value.reason == "REDEMPTION_CAP_EXCEEDED"
    assert balance(wired) == (0, 5_000, 0)


def test_a_retry_answers_the_first_result_and_writes_nothing(wired: Wired) -> None:
    first = wired.app.execute(cmd.Envelope(P, purchase("O1", ("SKU-1", "toys", 100_00)), "p1"))
    log = wired.app.store.read_all(0, 10_000)
    again = wired.app.execute(cmd.Envelope(P, purchase("O1", ("SKU-1", "toys", 100_00)), "p1"))
    assert again.replayed and again.events == first.events
    assert wired.app.store.read_all(0, 10_000) == log
    assert balance(wired) == (100, 0, 0)


def test_the_same_key_with_another_request_is_refused(wired: Wired) -> None:
    run(wired, purchase("O1", ("SKU-1", "toys", 100_00)), "p1")
    with pytest.raises(Conflict):
        run(wired, purchase("O1", ("SKU-1", "toys", 200_00)), "p1")
    assert balance(wired) == (100, 0, 0)


def test_a_refund_takes_back_what_the_line_earned(wired: Wired) -> None:
    run(wired, purchase("O1", ("SKU-1", "toys", 300_00)), "p1")
    run(wired, cmd.RefundPurchase("m1", "O1", "R1", (cmd.RefundLine("l0", 100_00),)), "r1")
    assert balance(wired) == (200, 0, 0)
    run(wired, cmd.RefundPurchase("m1", "O1", "R2", ()), "r2")
    assert balance(wired) == (0, 0, 0)


def test_replay_verifies_against_the_read_models(wired: Wired) -> None:
    run(wired, purchase("O1", ("SKU-1", "toys", 300_00)), "p1")
    wired.app.advance_clock(P, START + timedelta(days=8), "clock-1")
    run(wired, cmd.HoldPoints("m1", "H1", "O9", 20, 100_000), "h1")
    report = wired.app.verify_member(P, "m1")
    assert report.ok, (report.chain_break, report.mismatches)


def test_a_sale_naming_its_committed_hold_records_the_points_that_paid_for_it(wired: Wired) -> None:
    from ledger.application.idempotency import fingerprint
    from ledger.domain.errors import InvalidCommand, NotFound

    run(wired, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op1"), "a1")
    run(wired, cmd.HoldPoints("m1", "H1", "O1", 800, 100_00), "h1")
    sale = cmd.RecordPurchase("m1", "O1", (OrderLine("l1", "SKU-1", "toys", 1, 92_00),), 100_00, hold_id="H1")
    with pytest.raises(Refusal) as open_hold:
        run(wired, sale, "p0")
    assert open_hold.value.reason == "HOLD_NOT_COMMITTED"
    run(wired, cmd.CommitHold("m1", "H1", None), "c1")
    with pytest.raises(InvalidCommand) as wrong:
        run(wired, cmd.RecordPurchase("m1", "O1", sale.lines, 100_00, points_paid=700, hold_id="H1"), "p1")
    assert wrong.value.field == "points_paid"
    with pytest.raises(InvalidCommand) as other_order:
        run(wired, cmd.RecordPurchase("m1", "O2", sale.lines, 100_00, hold_id="H1"), "p2")
    assert other_order.value.field == "hold_id"
    with pytest.raises(NotFound):
        run(wired, cmd.RecordPurchase("m1", "O1", sale.lines, 100_00, hold_id="H9"), "p3")
    result = run(wired, sale, "p4")
    [recorded] = [e for e in result.events if type(e).__name__ == "PurchaseRecorded"]  # type: ignore[attr-defined]
    assert recorded.points_paid == 800
    # a request without a hold id is fingerprinted as before the field existed (retries across an upgrade match)
    plain = cmd.Envelope(P, cmd.RecordPurchase("m1", "O3", sale.lines, 100_00), "k")
    import hashlib

    old = "RecordPurchase(member_id='m1', order_id='O3', lines=" + repr(sale.lines) + ", order_total_fen=10000, points_paid=0)|"
    assert fingerprint(plain) == hashlib.sha256(old.encode()).hexdigest()
def test_a_referral_is_awarded_once_the_invitee_is_a_member_with_a_purchase(wired: Wired) -> None:
    with pytest.raises(Refusal) as unknown:
        run(wired, cmd.AwardPoints("m1", "referral", "m2"), "ref-1")
    assert (unknown.value.reason, unknown.value.metadata) == ("REFERRAL_NOT_QUALIFIED", {"reference": "m2"})
    wired.app.enroll(P, "m2", [("card_number", "C-2")], None, "enroll-m2")
    with pytest.raises(Refusal) as no_purchase:
        run(wired, cmd.AwardPoints("m1", "referral", "m2"), "ref-2")
    assert no_purchase.value.reason == "REFERRAL_NOT_QUALIFIED"
    with pytest.raises(Refusal) as oneself:
        run(wired, cmd.AwardPoints("m1", "referral", "m1"), "ref-3")
    assert oneself.value.reason == "REFERRAL_NOT_QUALIFIED"
    first = purchase("O1", ("SKU-1", "toys", 50_00))
    run(wired, cmd.RecordPurchase("m2", "O1", first.lines, first.order_total_fen), "p-m2")
    run(wired, cmd.AwardPoints("m1", "referral", "m2"), "ref-4")
    assert balance(wired) == (0, 200, 0)  # the inviter's 200 points, active at once
    state = wired.app.view(P, "m1").state
    assert (len(state.referrals), state.awarded_references) == (1, {("referral", "m2")})
    assert wired.app.view(P, "m2").state.version == 2  # the invitee's stream only holds its own events


def _in_one_group(w: Wired, monkeypatch: pytest.MonkeyPatch, requests: list[cmd.Envelope]) -> list[Any]:
    """Decide ``requests`` as one group of the writer (held inside a first command of m1 until they all queue)."""
    return in_one_group(w, monkeypatch, requests, P, "m1")


def test_in_one_group_a_retry_gets_the_first_answer_and_another_request_with_the_key_is_refused(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cmd.Envelope(P, cmd.AdjustPoints("m1", 10, "GOODWILL", "n", "op1"), "k1")
    retry = cmd.Envelope(P, cmd.AdjustPoints("m1", 10, "GOODWILL", "n", "op1"), "k1")
    other = cmd.Envelope(P, cmd.AdjustPoints("m1", 20, "GOODWILL", "n", "op1"), "k1")
    answered, again, refused = _in_one_group(wired, monkeypatch, [first, retry, other])
    assert isinstance(answered, CommandResult) and isinstance(again, CommandResult)
    assert (again.events, again.version, again.replayed) == (answered.events, answered.version, True)
    assert isinstance(refused, Conflict)
    assert balance(wired) == (0, 11, 0)  # the blocker's 1 and the first 10, once


def test_two_terminals_holding_at_once_never_overspend(wired: Wired, monkeypatch: pytest.MonkeyPatch) -> None:
    run(wired, cmd.AdjustPoints("m1", 100, "GOODWILL", "opening", "op1"), "a1")
    till_a = cmd.Envelope(P, cmd.HoldPoints("m1", "HA", "OA", 70, 100_000), "ha")
    till_b = cmd.Envelope(P, cmd.HoldPoints("m1", "HB", "OB", 70, 100_000), "hb")
    held, refused = _in_one_group(wired, monkeypatch, [till_a, till_b])
    assert isinstance(held, CommandResult)
    assert isinstance(refused, Refusal)
    assert (refused.reason, refused.metadata) == ("INSUFFICIENT_POINTS", {"available": "31", "requested": "70"})
    assert balance(wired) == (0, 101, 70)


def test_only_a_program_on_a_test_clock_moves_its_clock_by_hand(wired: Wired) -> None:
    wired.app.create_program("real", "Real clock", reference_document(), "real", START, "create-real")
    with pytest.raises(Refusal) as refused:
        wired.app.advance_clock("real", START + timedelta(days=1), "clock-real")
    assert (refused.value.reason, refused.value.metadata) == ("NOT_ON_TEST_CLOCK", {"program_id": "real"})
    wired.app.advance_clock(P, START + timedelta(days=1), "clock-1")
    assert wired.app.now(P) == START + timedelta(days=1)


def test_a_referral_outside_the_offline_window_is_refused_for_that_before_its_invitee_is_looked_up(wired: Wired) -> None:
    late = cmd.Envelope(P, cmd.AwardPoints("m1", "referral", "m2"), "ref-late", START - timedelta(days=31))
    with pytest.raises(Refusal) as refused:
        wired.app.execute(late)
    assert refused.value.reason == "OUTSIDE_OFFLINE_WINDOW"
