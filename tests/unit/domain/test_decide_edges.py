"""Edges of the decide rules with Little Sprout's exact numbers: lot order and its ties, holds and the
redemption cap, take-back and points returned on refunds, arrears, activation and expiry, late sales and
behaviour caps on Asia/Shanghai day boundaries. Each test names a number a broken rule gets wrong."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import (
    AdjustPoints,
    AwardPoints,
    CommitHold,
    HoldPoints,
    MemberCommand,
    MergeMembers,
    OverrideTier,
    Profile,
    RecordPurchase,
    RefundLine,
    RefundPurchase,
    ReleaseHold,
)
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.earning import cap_usage
from ledger.domain.decide.members import merge
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, PolicyVersion, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=SH)


def run(
    state: MemberState,
    command: MemberCommand,
    now: datetime,
    at: datetime | None = None,
    history: PolicyHistory = HISTORY,
    invitee: MemberState | None = None,
) -> list[ev.MemberEvent]:
    """What the writer does: run what fell due up to ``now``, decide, apply (``invitee``: the member a
    referral names, as the writer looks it up)."""
    ctx = Context(now=now, at=at or now, policies=history, invitee=invitee)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


def advance(state: MemberState, now: datetime) -> list[ev.MemberEvent]:
    events = tick(state, Context(now=now, at=now, policies=HISTORY))
    fold(state, events)
    return events


def refused(state: MemberState, command: MemberCommand, now: datetime, at: datetime | None = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        run(state, command, now, at)
    return caught.value


def invalid(state: MemberState, command: MemberCommand, now: datetime, at: datetime | None = None) -> InvalidCommand:
    with pytest.raises(InvalidCommand) as caught:
        run(state, command, now, at)
    return caught.value


ENROLLED = sh(2026, 2, 20, 10)


def member(at: datetime = ENROLLED) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    return fold(state, [ev.MemberEnrolled(at=at, member_id="m1", identities=(), tier="regular", policy_version=1)])


def adjust(state: MemberState, points: int, now: datetime) -> list[ev.MemberEvent]:
    return run(state, AdjustPoints("m1", points, "GOODWILL", "note", "op-1"), now)


def award(
    state: MemberState, behaviour: str, now: datetime, reference: str | None = None, invitee: MemberState | None = None
) -> list[ev.MemberEvent]:
    """Award ``behaviour``; without ``reference``, a fresh one (none for a check-in, which needs none)."""
    if reference is None:
        reference = "" if behaviour == "check_in" else f"{behaviour}-{state.version + 1}"
    return run(state, AwardPoints("m1", behaviour, reference), now, invitee=invitee)


FIRST_PURCHASE = sh(2026, 3, 1, 9)


def invited(member_id: str, bought_at: datetime | None = FIRST_PURCHASE) -> MemberState:
    """An invitee enrolled with ``ENROLLED``, who made a purchase at ``bought_at`` (None: none yet)."""
    state = MemberState(program_id="ls", member_id=member_id)
    fold(state, [ev.MemberEnrolled(at=ENROLLED, member_id=member_id, identities=(), tier="regular", policy_version=1)])
    if bought_at is not None:
        purchase = RecordPurchase(member_id, "first", (line("L1", 5000),), 5000)
        fold(state, decide(purchase, state, Context(now=bought_at, at=bought_at, policies=HISTORY)))
    return state


def sale(
    state: MemberState, order_id: str, lines: tuple[OrderLine, ...], now: datetime, at: datetime | None = None
) -> list[ev.MemberEvent]:
    total = sum(line.paid_fen for line in lines)
    return run(state, RecordPurchase("m1", order_id, lines, total), now, at)


def line(line_id: str, paid_fen: int, category: str = "toys", sku: str = "SKU-1", quantity: int = 1) -> OrderLine:
    return OrderLine(line_id=line_id, sku=sku, category=category, quantity=quantity, paid_fen=paid_fen)


def only(events: list[ev.MemberEvent], kind: type[ev.MemberEvent]) -> ev.MemberEvent:
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


def lot_of(events: list[ev.MemberEvent]) -> str:
    """The id of the lot the events credit."""
    [lot_id] = [e.lot.lot_id for e in events if isinstance(e, (ev.PointsAdjusted, ev.PointsAwarded, ev.PurchaseRecorded)) and e.lot]
    return lot_id


def lot_work(events: list[ev.MemberEvent]) -> list[ev.MemberEvent]:
    """The activations and expiries among time-driven events (calendar grants left out)."""
    return [e for e in events if isinstance(e, (ev.LotActivated, ev.LotExpired))]


def pairs(debits: tuple[ev.LotDebit, ...]) -> list[tuple[str, int]]:
    return [(d.lot_id, d.points) for d in debits]


def held(state: MemberState, hold_id: str, points: int, now: datetime, order_total_fen: int = 1_000_000,
         order_id: str = "X1", ttl: int | None = None) -> ev.PointsHeld:
    e = only(run(state, HoldPoints("m1", hold_id, order_id, points, order_total_fen, ttl), now), ev.PointsHeld)
    assert isinstance(e, ev.PointsHeld)
    return e


# -- lot order -------------------------------------------------------------------------------------------------


def test_a_lot_recorded_later_but_expiring_sooner_is_spent_first() -> None:
    state = member()
    award(state, "workshop", sh(2026, 3, 1, 0, 30))  # 00:30 local on 1 March: expires at the end of March 2027
    lot_b = next(iter(state.lots))
    # A late sale of 10 February (active 17 February): recorded after the award, expires at the end of February 2027.
    sale(state, "O1", (line("L1", 5000),), now=sh(2026, 3, 1, 0, 40), at=sh(2026, 2, 10, 12))
    assert state.lots["P-O1"].expires_at == sh(2027, 3, 1)
    assert state.lots[lot_b].expires_at == sh(2027, 4, 1)
    hold = held(state, "H1", 60, sh(2026, 3, 1, 1))
    assert pairs(hold.allocations) == [("P-O1", 50), (lot_b, 10)]


def test_equal_expiry_spends_the_earliest_business_time_first_then_the_order_recorded() -> None:
    state = member()
    award(state, "review", sh(2026, 3, 20, 10))  # 5 points, active at once, expires end of March 2027
    review = next(iter(state.lots))
    # A late sale of 1 March (active 8 March), recorded on 25 March: same expiry, earlier business time.
    sale(state, "O1", (line("L1", 1000),), now=sh(2026, 3, 25, 10), at=sh(2026, 3, 1, 12))
    award(state, "check_in", sh(2026, 3, 25, 11))  # 1 point, same expiry, same business time order as recorded
    check_in = next(lot_id for lot_id in state.lots if lot_id not in (review, "P-O1"))
    assert {lot.expires_at for lot in state.lots.values()} == {sh(2027, 4, 1)}
    hold = held(state, "H1", 16, sh(2026, 3, 25, 12))
    assert pairs(hold.allocations) == [("P-O1", 10), (review, 5), (check_in, 1)]


def test_a_negative_adjustment_takes_the_soonest_expiring_lots_first() -> None:
    state = member()
    a = lot_of(adjust(state, 30, sh(2026, 2, 21, 10)))  # expires end of February 2027
    b = lot_of(adjust(state, 40, sh(2026, 3, 5, 10)))  # expires end of March 2027
    e = only(adjust(state, -35, sh(2026, 3, 6, 10)), ev.PointsAdjusted)
    assert isinstance(e, ev.PointsAdjusted)
    assert pairs(e.debits) == [(a, 30), (b, 5)]
    assert (state.active, state.lots[a].remaining, state.lots[b].remaining) == (35, 0, 35)


def test_a_negative_adjustment_beyond_the_spendable_points_is_refused_with_what_is_available() -> None:
    state = member()
    a = lot_of(adjust(state, 30, sh(2026, 2, 21, 10)))
    held(state, "H1", 10, sh(2026, 2, 21, 11))
    refusal = refused(state, AdjustPoints("m1", -21, "FIX", "note", "op-1"), sh(2026, 2, 21, 11, 1))
    assert refusal.reason == "INSUFFICIENT_POINTS"
    assert refusal.metadata == {"requested": "21", "available": "20"}
    e = only(adjust(state, -20, sh(2026, 2, 21, 11, 2)), ev.PointsAdjusted)
    assert isinstance(e, ev.PointsAdjusted)
    assert pairs(e.debits) == [(a, 20)]


@pytest.mark.parametrize("field", ["reason_code", "note", "operator_id"])
def test_an_adjustment_needs_a_reason_code_a_note_and_an_operator(field: str) -> None:
    state = member()
    values = {"reason_code": "GOODWILL", "note": "n", "operator_id": "op", field: "  "}
    error = invalid(state, AdjustPoints("m1", 5, values["reason_code"], values["note"], values["operator_id"]), sh(2026, 2, 2))
    assert error.field == ("context.operator_id" if field == "operator_id" else field)


def test_a_zero_adjustment_is_refused() -> None:
    assert invalid(member(), AdjustPoints("m1", 0, "FIX", "n", "op"), sh(2026, 2, 2)).field == "points"


def test_a_positive_adjustment_is_a_lot_active_at_once_expiring_at_the_end_of_the_twelfth_month() -> None:
    state = member()
    e = only(adjust(state, 25, sh(2026, 3, 31, 23, 30)), ev.PointsAdjusted)  # still March in Shanghai
    assert isinstance(e, ev.PointsAdjusted) and e.lot is not None
    assert (e.lot.lot_id, e.lot.points, e.lot.active_at, e.lot.expires_at) == (f"A-{state.version}", 25, sh(2026, 3, 31, 23, 30), sh(2027, 4, 1))
    assert (e.arrears_added, e.arrears_repaid, e.policy_version) == (0, 0, 1)
    assert state.active == 25


# -- holds and the redemption cap ------------------------------------------------------------------------------


def test_the_hold_cap_is_the_floor_of_the_tier_share_and_counts_what_is_already_held_and_committed() -> None:
    state = member()
    adjust(state, 5000, sh(2026, 2, 21, 10))
    now = sh(2026, 2, 6, 10)
    # Regular: 10% of 12,345 fen is 1,234.5 fen: at most 1,234 points.
    refusal = refused(state, HoldPoints("m1", "H1", "O9", 1235, 12345), now)
    assert refusal.reason == "REDEMPTION_CAP_EXCEEDED"
    assert refusal.metadata == {
        "cap_points": "1234", "already_held": "0", "requested": "1235", "order_total_fen": "12345",
        "cap_share": "0.1", "tier": "regular",
    }
    first = held(state, "H1", 1000, now, order_total_fen=12345, order_id="O9")
    assert (first.cap_points, first.value_fen, first.points, first.order_total_fen) == (1234, 1000, 1000, 12345)
    assert first.expires_at == now + timedelta(seconds=900)
    assert first.policy_version == 1
    again = refused(state, HoldPoints("m1", "H2", "O9", 235, 12345), now)
    assert (again.reason, again.metadata["already_held"]) == ("REDEMPTION_CAP_EXCEEDED", "1000")
    # Another order has its own cap.
    held(state, "H3", 1234, now, order_total_fen=12345, order_id="O10")
    run(state, CommitHold("m1", "H1", 600), now)
    # Committed points count towards the order's cap like held ones.
    later = refused(state, HoldPoints("m1", "H4", "O9", 635, 12345), now)
    assert later.metadata["already_held"] == "600"
    assert held(state, "H4", 634, now, order_total_fen=12345, order_id="O9").points == 634


def test_a_hold_cannot_use_a_lot_that_expires_before_the_hold_does() -> None:
    state = member()
    adjust(state, 100, sh(2026, 3, 10))  # expires 2027-04-01 00:00 local
    now = sh(2027, 3, 31, 23, 50)
    # ten minutes of hold end exactly when the lot expires: the lot is not used
    refusal = refused(state, HoldPoints("m1", "H1", "O1", 10, 100_000, 600), now)
    assert refusal.reason == "INSUFFICIENT_POINTS"
    assert refusal.metadata == {"available": "0", "requested": "10"}
    hold = held(state, "H2", 10, now, ttl=599)
    assert hold.expires_at == sh(2027, 3, 31, 23, 59, 59)


def test_insufficient_points_names_what_is_available() -> None:
    state = member()
    adjust(state, 40, sh(2026, 3, 10))
    refusal = refused(state, HoldPoints("m1", "H1", "O1", 41, 100_000), sh(2026, 3, 10, 1))
    assert refusal.metadata == {"available": "40", "requested": "41"}
    assert held(state, "H2", 40, sh(2026, 3, 10, 1)).points == 40


@pytest.mark.parametrize(("ttl", "ok"), [(None, True), (1, True), (3600, True), (3601, False), (-1, False)])
def test_hold_time_to_live_is_between_one_second_and_an_hour(ttl: int | None, ok: bool) -> None:
    state = member()
    adjust(state, 40, sh(2026, 3, 10))
    now = sh(2026, 3, 10, 1)
    command = HoldPoints("m1", "H1", "O1", 10, 100_000, ttl)
    if ok:
        e = only(run(state, command, now), ev.PointsHeld)
        assert isinstance(e, ev.PointsHeld)
        assert e.expires_at == now + timedelta(seconds=ttl or 900)
    else:
        assert invalid(state, command, now).field == "ttl_seconds"


@pytest.mark.parametrize(("points", "total", "field"), [(0, 1000, "points"), (-1, 1000, "points"), (1, 0, "order_total_fen")])
def test_a_hold_needs_positive_points_and_order_total(points: int, total: int, field: str) -> None:
    state = member()
    adjust(state, 40, sh(2026, 3, 10))
    refusal = invalid(state, HoldPoints("m1", "H1", "O1", points, total), sh(2026, 3, 10, 1))
    assert (refusal.field, refusal.message) == (field, "must be positive")


def test_a_hold_id_is_used_once_even_after_the_hold_is_closed() -> None:
    state = member()
    adjust(state, 40, sh(2026, 3, 10))
    now = sh(2026, 3, 10, 1)
    held(state, "H1", 10, now)
    assert refused(state, HoldPoints("m1", "H1", "O1", 10, 100_000), now).reason == "HOLD_EXISTS"
    run(state, ReleaseHold("m1", "H1"), now)
    assert refused(state, HoldPoints("m1", "H1", "O1", 10, 100_000), now).reason == "HOLD_EXISTS"


def test_a_partial_commit_debits_the_soonest_expiring_allocation_first_and_releases_the_rest() -> None:
    state = member()
    a = lot_of(adjust(state, 10, sh(2026, 2, 21)))
    b = lot_of(adjust(state, 5, sh(2026, 3, 5)))
    now = sh(2026, 3, 6)
    hold = held(state, "H1", 12, now)
    assert pairs(hold.allocations) == [(a, 10), (b, 2)]
    assert state.available == 3
    e = only(run(state, CommitHold("m1", "H1", 11), now), ev.HoldCommitted)
    assert isinstance(e, ev.HoldCommitted)
    assert (pairs(e.debits), e.points, e.released) == ([(a, 10), (b, 1)], 11, 1)
    assert (state.active, state.held, state.available) == (4, 0, 4)


def test_a_commit_without_points_takes_the_whole_hold_and_more_than_held_is_refused() -> None:
    state = member()
    adjust(state, 50, sh(2026, 3, 5))
    now = sh(2026, 3, 6)
    held(state, "H1", 20, now)
    refusal = refused(state, CommitHold("m1", "H1", 21), now)
    assert (refusal.reason, refusal.metadata) == ("INSUFFICIENT_POINTS", {"available": "20", "requested": "21", "held": "20"})
    assert invalid(state, CommitHold("m1", "H1", -1), now).field == "points"
    e = only(run(state, CommitHold("m1", "H1"), now), ev.HoldCommitted)
    assert isinstance(e, ev.HoldCommitted)
    assert (e.points, e.released) == (20, 0)
    again = refused(state, CommitHold("m1", "H1"), now)
    assert (again.reason, again.metadata) == ("HOLD_NOT_OPEN", {"hold_id": "H1", "status": "COMMITTED"})


def test_an_open_hold_times_out_exactly_at_its_expiry() -> None:
    state = member()
    adjust(state, 50, sh(2026, 3, 5))
    hold = held(state, "H1", 20, sh(2026, 3, 6, 10))
    assert hold.expires_at == sh(2026, 3, 6, 10, 15)
    assert advance(state, sh(2026, 3, 6, 10, 15) - timedelta(microseconds=1)) == []
    [released] = advance(state, sh(2026, 3, 6, 10, 15))
    assert released == ev.HoldReleased(at=sh(2026, 3, 6, 10, 15), hold_id="H1", points=20, reason="expired")
    assert state.available == 50
    refusal = refused(state, CommitHold("m1", "H1"), sh(2026, 3, 6, 10, 16))
    assert refusal.reason == "HOLD_EXPIRED"
    assert refusal.metadata == {"hold_id": "H1", "expired_at": "2026-03-06T02:15:00Z"}
    release = refused(state, ReleaseHold("m1", "H1"), sh(2026, 3, 6, 10, 16))
    assert release.metadata == {"hold_id": "H1", "status": "EXPIRED"}


def test_holds_due_together_time_out_in_expiry_then_id_order() -> None:
    state = member()
    adjust(state, 50, sh(2026, 3, 5))
    held(state, "H2", 5, sh(2026, 3, 6, 10))
    held(state, "H1", 5, sh(2026, 3, 6, 10))
    held(state, "H0", 5, sh(2026, 3, 6, 10, 1))
    out = advance(state, sh(2026, 3, 6, 11))
    assert [(e.hold_id, e.at) for e in out if isinstance(e, ev.HoldReleased)] == [
        ("H1", sh(2026, 3, 6, 10, 15)), ("H2", sh(2026, 3, 6, 10, 15)), ("H0", sh(2026, 3, 6, 10, 16)),
    ]


def test_releasing_a_hold_returns_its_points_and_an_unknown_hold_is_not_found() -> None:
    state = member()
    adjust(state, 50, sh(2026, 3, 5))
    held(state, "H1", 20, sh(2026, 3, 6))
    [e] = run(state, ReleaseHold("m1", "H1"), sh(2026, 3, 6, 0, 1))
    assert e == ev.HoldReleased(at=sh(2026, 3, 6, 0, 1), hold_id="H1", points=20, reason="released")
    assert state.available == 50
    with pytest.raises(NotFound):
        run(state, ReleaseHold("m1", "nope"), sh(2026, 3, 6, 0, 2))


# -- purchases ---------------------------------------------------------------------------------------------------


def test_a_sale_lot_is_pending_seven_days_and_expires_at_the_end_of_the_twelfth_month_after_activation() -> None:
    state = member(sh(2026, 3, 1))
    events = sale(state, "O1", (line("L1", 10001),), now=sh(2026, 3, 24, 23, 30))
    recorded = only(events, ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded) and recorded.lot is not None
    assert (recorded.points, recorded.growth, recorded.lot.lot_id) == (100, 100, "P-O1")
    # active 31 March 23:30 local: the lot expires at the end of March 2027
    assert recorded.lot.active_at == sh(2026, 3, 31, 23, 30)
    assert recorded.lot.expires_at == sh(2027, 4, 1)
    assert (state.pending, state.active) == (100, 0)
    assert lot_work(advance(state, sh(2026, 3, 31, 23, 29))) == []
    [activated] = lot_work(advance(state, sh(2026, 3, 31, 23, 30)))
    assert activated == ev.LotActivated(at=sh(2026, 3, 31, 23, 30), lot_id="P-O1", points=100, arrears_repaid=0)
    assert (state.pending, state.active) == (0, 100)
    assert lot_work(advance(state, sh(2027, 4, 1) - timedelta(microseconds=1))) == []
    [expired] = lot_work(advance(state, sh(2027, 4, 1)))
    assert expired == ev.LotExpired(at=sh(2027, 4, 1), lot_id="P-O1", points=100)
    assert state.active == 0


def test_a_late_sale_past_its_return_window_is_active_when_recorded() -> None:
    state = member()
    events = sale(state, "O1", (line("L1", 2000),), now=sh(2026, 3, 20, 10), at=sh(2026, 3, 13, 10))
    activated = only(events, ev.LotActivated)
    assert activated == ev.LotActivated(at=sh(2026, 3, 20, 10), lot_id="P-O1", points=20, arrears_repaid=0)
    assert state.active == 20
    # one microsecond less late: still pending when recorded
    other = sale(state, "O2", (line("L1", 2000),), now=sh(2026, 3, 20, 10), at=sh(2026, 3, 13, 10, 0, 1))
    assert not [e for e in other if isinstance(e, ev.LotActivated)]


def test_the_offline_window_is_thirty_days_and_the_clock_skew_five_minutes() -> None:
    state = member()
    now = sh(2026, 4, 1, 10)
    sale(state, "O1", (line("L1", 100),), now=now, at=now - timedelta(days=30))
    refusal = refused(state, RecordPurchase("m1", "O2", (line("L1", 100),), 100), now, now - timedelta(days=30, microseconds=1))
    assert refusal.reason == "OUTSIDE_OFFLINE_WINDOW"
    assert refusal.metadata["window_days"] == "30"
    assert refusal.metadata["earliest_allowed"] == "2026-03-02T02:00:00Z"
    sale(state, "O3", (line("L1", 100),), now=now, at=now + timedelta(minutes=5))
    with pytest.raises(InvalidCommand):
        run(state, RecordPurchase("m1", "O4", (line("L1", 100),), 100), now, now + timedelta(minutes=5, microseconds=1))


def test_an_order_is_recorded_once() -> None:
    state = member()
    sale(state, "O1", (line("L1", 1000), line("L2", 999, category="infant_formula")), now=sh(2026, 3, 10))
    refusal = refused(state, RecordPurchase("m1", "O1", (line("L1", 5),), 5), sh(2026, 3, 10, 1))
    assert refusal.reason == "ORDER_ALREADY_RECORDED"
    assert refusal.metadata == {"order_id": "O1", "points_earned": "14", "lot_id": "P-O1"}


def test_a_sale_earning_nothing_has_no_lot() -> None:
    state = member()
    recorded = only(sale(state, "O1", (line("L1", 99),), now=sh(2026, 3, 10)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert (recorded.points, recorded.growth, recorded.lot) == (0, 0, None)
    refusal = refused(state, RecordPurchase("m1", "O1", (line("L1", 5),), 5), sh(2026, 3, 10, 1))
    assert refusal.metadata["lot_id"] == ""


def test_a_sale_records_each_line_and_the_multiplier_of_its_business_time() -> None:
    state = member()
    lines = (
        line("L1", 10001),
        line("L2", 999, category="infant_formula"),
        line("L3", 1999, sku="LS-RICE-CEREAL-01", category="baby_food", quantity=2),
    )
    # recorded on the 16th, business time the 15th (member day x2)
    recorded = only(run(state, RecordPurchase("m1", "O1", lines, 15000, points_paid=1), sh(2026, 3, 16, 9), sh(2026, 3, 15, 23)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert [(ln.line_id, ln.rate, ln.base_points, ln.bonus_points, ln.points) for ln in recorded.lines] == [
        ("L1", "1", 200, 0, 200), ("L2", "1/2", 9, 0, 9), ("L3", "1", 39, 40, 79),
    ]
    assert [(ln.sku, ln.category, ln.quantity, ln.paid_fen) for ln in recorded.lines][2] == ("LS-RICE-CEREAL-01", "baby_food", 2, 1999)
    assert (recorded.multiplier, recorded.multiplier_rule, recorded.points, recorded.growth) == ("2", "member_day", 288, 129)
    assert [(c.rule, c.factor) for c in recorded.candidates] == [("tier:regular", "1"), ("member_day", "2")]
    assert (recorded.order_total_fen, recorded.points_paid, recorded.tier, recorded.at) == (15000, 1, "regular", sh(2026, 3, 15, 23))
    assert state.orders["O1"].growth == 129


@pytest.mark.parametrize(
    ("lines", "points_paid", "field"),
    [
        ((), 0, "lines"),
        ((OrderLine("L1", "S", "toys", 1, 100), OrderLine("L1", "S", "toys", 1, 100)), 0, "lines[1].line_id"),
        ((OrderLine("L1", "S", "toys", 1, 100),), -1, "points_paid"),
    ],
)
def test_a_malformed_order_is_refused_naming_the_field(lines: tuple[OrderLine, ...], points_paid: int, field: str) -> None:
    state = member()
    assert invalid(state, RecordPurchase("m1", "O1", lines, 100, points_paid), sh(2026, 3, 10)).field == field


def test_the_win_back_multiplier_needs_thirty_days_without_activity() -> None:
    state = member(sh(2026, 1, 1, 10))
    award(state, "check_in", sh(2026, 2, 1, 10))
    # 30 days after the last activity: x2
    recorded = only(sale(state, "O1", (line("L1", 1000),), now=sh(2026, 3, 3, 10)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert (recorded.multiplier_rule, recorded.points) == ("campaign:win_back", 20)
    # the sale itself is activity: the next one, a day later, earns x1
    recorded = only(sale(state, "O2", (line("L1", 1000),), now=sh(2026, 3, 4, 10)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert (recorded.multiplier_rule, recorded.points) == ("tier:regular", 10)


def test_win_back_counts_from_enrolment_for_a_member_who_never_did_anything() -> None:
    state = member(sh(2026, 2, 1, 10))
    recorded = only(sale(state, "O1", (line("L1", 1000),), now=sh(2026, 3, 3, 9, 59)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert recorded.multiplier_rule == "tier:regular"
    recorded = only(sale(member(sh(2026, 2, 1, 10)), "O1", (line("L1", 1000),), now=sh(2026, 3, 3, 10)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert recorded.multiplier_rule == "campaign:win_back"


# -- behaviours ------------------------------------------------------------------------------------------------


def test_review_caps_count_the_shanghai_day_not_the_utc_day() -> None:
    state = member()
    for minute in (0, 10, 20):
        award(state, "review", sh(2026, 3, 10, 23, minute))
    refusal = refused(state, AwardPoints("m1", "review", "R-4"), sh(2026, 3, 10, 23, 59, 59))
    assert refusal.reason == "BEHAVIOUR_CAP_REACHED"
    assert refusal.metadata == {
        "behaviour": "review", "cap_group": "reviews", "period": "DAY", "limit": "3", "used": "3",
        "resets_at": "2026-03-10T16:00:00Z",
    }
    # 00:00 local on the 11th is still 10 March in UTC: a new day for the cap
    [awarded] = award(state, "review_with_photos", sh(2026, 3, 11))
    assert isinstance(awarded, ev.PointsAwarded)
    assert (awarded.points, awarded.growth, awarded.cap_group) == (10, 10, "reviews")


def test_reviews_are_capped_at_twenty_a_local_month() -> None:
    state = member()
    day = sh(2026, 3, 1, 0, 30)
    for i in range(20):
        award(state, "review", day + timedelta(days=i // 3, minutes=i))
    refusal = refused(state, AwardPoints("m1", "review", "R-21"), sh(2026, 3, 31, 23, 59))
    assert refusal.metadata["period"] == "MONTH"
    assert (refusal.metadata["limit"], refusal.metadata["used"]) == ("20", "20")
    assert refusal.metadata["resets_at"] == "2026-03-31T16:00:00Z"
    award(state, "review", sh(2026, 4, 1))


def test_a_behaviour_lot_is_active_at_once_and_repays_arrears_first() -> None:
    state = member()
    state.arrears = 30  # as a refund beyond the balance leaves it
    [awarded] = award(state, "offline_event", sh(2026, 3, 31, 23, 59))
    assert isinstance(awarded, ev.PointsAwarded) and awarded.lot is not None
    assert (awarded.points, awarded.arrears_repaid, awarded.lot.points) == (50, 30, 50)
    assert (awarded.lot.active_at, awarded.lot.expires_at) == (sh(2026, 3, 31, 23, 59), sh(2027, 4, 1))
    assert (state.arrears, state.active) == (0, 20)


def test_a_referral_grants_its_coupon_and_a_reference_is_awarded_once() -> None:
    state = member()
    events = award(state, "referral", sh(2026, 3, 10), reference="invitee-1", invitee=invited("invitee-1"))
    grant = only(events, ev.EntitlementGranted)
    assert isinstance(grant, ev.EntitlementGranted)
    assert (grant.benefit, grant.value_fen, grant.source) == ("referral_coupon", 2000, "behaviour:referral:invitee-1")
    with pytest.raises(Refusal) as again:
        run(state, AwardPoints("m1", "referral", "invitee-1"), sh(2026, 3, 11), invitee=invited("invitee-1"))
    assert again.value.metadata == {"behaviour": "referral", "reference": "invitee-1"}
    with pytest.raises(InvalidCommand):
        run(state, AwardPoints("m1", "dance", ""), sh(2026, 3, 11))


@pytest.mark.parametrize(
    ("invitee", "reason"),
    [
        (None, "no member of the program"),
        (invited("invitee-1", bought_at=None), "a member without a purchase"),
        (invited("invitee-1", bought_at=sh(2026, 3, 10, 11)), "a purchase only after the referral's business time"),
        (invited("m1"), "the inviter"),
        (invited("someone-else"), "another member than the reference names"),
    ],
)
def test_a_referral_needs_an_invitee_who_is_a_member_with_a_purchase(invitee: MemberState | None, reason: str) -> None:
    state = member()
    reference = invitee.member_id if invitee is not None and invitee.member_id != "someone-else" else "invitee-1"
    with pytest.raises(Refusal) as caught:
        run(state, AwardPoints("m1", "referral", reference), sh(2026, 3, 10, 10), invitee=invitee)
    assert (caught.value.reason, caught.value.metadata) == ("REFERRAL_NOT_QUALIFIED", {"reference": reference}), reason
    assert (state.active, state.referrals, state.entitlements) == (0, [], {})


# -- refunds -----------------------------------------------------------------------------------------------------


def _three_line_sale(state: MemberState) -> None:
    lines = (
        line("L1", 10001),
        line("L2", 999, category="infant_formula"),
        line("L3", 1999, sku="LS-RICE-CEREAL-01", quantity=2),
    )
    recorded = only(sale(state, "O1", lines, now=sh(2026, 3, 10, 10)), ev.PurchaseRecorded)
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert (recorded.points, recorded.growth) == (163, 129)


def refund(state: MemberState, refund_id: str, now: datetime, *lines: tuple[str, int], order_id: str = "O1") -> ev.PurchaseRefunded:
    command = RefundPurchase("m1", order_id, refund_id, tuple(RefundLine(lid, fen) for lid, fen in lines))
    e = only(run(state, command, now), ev.PurchaseRefunded)
    assert isinstance(e, ev.PurchaseRefunded)
    return e


def test_partial_refunds_take_back_the_ceiling_of_the_share_and_add_up_to_the_full_take_back() -> None:
    state = member()
    _three_line_sale(state)
    first = refund(state, "R1", sh(2026, 3, 11), ("L1", 3333))
    # ceil(100 * 3333 / 10001) = ceil(33.33) = 34; growth ceil(129 * 3333 / 12999) = ceil(33.08) = 34
    assert [(ln.line_id, ln.refunded_fen, ln.points_taken) for ln in first.lines] == [("L1", 3333, 34)]
    assert (first.points_taken, first.growth_taken, first.refunded_fen) == (34, 34, 3333)
    assert pairs(first.debits) == [("P-O1", 34)]
    assert (first.arrears_added, first.forgiven, first.points_returned, first.clawback) == (0, 0, 0, "arrears")
    second = refund(state, "R2", sh(2026, 3, 12), ("L1", 3334))
    # ceil(100 * 6667 / 10001) = 67: 33 more; growth ceil(129 * 6667 / 12999) = 67: 33 more
    assert (second.points_taken, second.growth_taken) == (33, 33)
    rest = refund(state, "R3", sh(2026, 3, 13))
    assert [(ln.line_id, ln.refunded_fen, ln.points_taken) for ln in rest.lines] == [
        ("L1", 3334, 33), ("L2", 999, 4), ("L3", 1999, 59),
    ]
    assert (rest.points_taken, rest.growth_taken, rest.refunded_fen) == (96, 62, 6332)
    assert 34 + 33 + 96 == 163 and 34 + 33 + 62 == 129
    assert (state.pending, state.active, state.arrears) == (0, 0, 0)
    assert state.growth_between(sh(2026, 1, 1), sh(2026, 12, 1)) == 0
    refusal = refused(state, RefundPurchase("m1", "O1", "R4"), sh(2026, 3, 14))
    assert refusal.metadata == {"order_id": "O1", "paid_fen": "12999", "refunded_fen": "12999"}


def test_a_refund_is_applied_once_and_cannot_exceed_what_a_line_paid() -> None:
    state = member()
    _three_line_sale(state)
    refund(state, "R1", sh(2026, 3, 11), ("L2", 500))
    assert refused(state, RefundPurchase("m1", "O1", "R1", (RefundLine("L2", 1),)), sh(2026, 3, 11)).reason == "REFUND_EXISTS"
    over = refused(state, RefundPurchase("m1", "O1", "R2", (RefundLine("L2", 500),)), sh(2026, 3, 11))
    assert over.reason == "REFUND_EXCEEDS_LINE"
    assert over.metadata == {"order_id": "O1", "line_id": "L2", "paid_fen": "999", "refunded_fen": "500", "requested_fen": "500"}
    assert refund(state, "R2", sh(2026, 3, 11), ("L2", 499)).lines[0].points_taken == 4 - 3
    with pytest.raises(NotFound):
        run(state, RefundPurchase("m1", "O1", "R3", (RefundLine("L9", 1),)), sh(2026, 3, 11))
    with pytest.raises(NotFound):
        run(state, RefundPurchase("m1", "O9", "R3"), sh(2026, 3, 11))
    assert invalid(state, RefundPurchase("m1", "O1", "R3", (RefundLine("L1", 0),)), sh(2026, 3, 11)).field == "lines[0].refunded_fen"
    twice = (RefundLine("L1", 1), RefundLine("L1", 1))
    assert invalid(state, RefundPurchase("m1", "O1", "R3", twice), sh(2026, 3, 11)).field == "lines[1].line_id"


def test_take_back_goes_own_lot_then_other_lots_soonest_expiring_then_arrears() -> None:
    state = member()
    a = lot_of(adjust(state, 50, sh(2026, 2, 21, 10)))  # expires end of February 2027
    workshop = lot_of(award(state, "workshop", sh(2026, 3, 5, 10)))  # 100 points, expires end of March 2027
    sale(state, "O1", (line("L1", 20000),), now=sh(2026, 3, 10, 10))  # 200 points, active 17 March
    advance(state, sh(2026, 3, 20))
    # spend 330 on another order: A-2 50, the workshop's 100, 180 of the sale's own lot
    hold = held(state, "H1", 330, sh(2026, 3, 20, 9), order_id="X1")
    assert pairs(hold.allocations) == [(a, 50), (workshop, 100), ("P-O1", 180)]
    run(state, CommitHold("m1", "H1"), sh(2026, 3, 20, 9))
    check_in = lot_of(award(state, "check_in", sh(2026, 3, 21, 10)))
    adjustment = lot_of(adjust(state, 10, sh(2026, 3, 21, 10, 1)))
    e = refund(state, "R1", sh(2026, 3, 22))
    assert e.points_taken == 200
    assert pairs(e.debits) == [("P-O1", 20), (check_in, 1), (adjustment, 10)]
    assert (e.arrears_added, e.forgiven) == (169, 0)
    assert (state.active, state.arrears) == (0, 169)
    # arrears are repaid first: by the next behaviour at once ...
    [awarded] = award(state, "workshop", sh(2026, 3, 22, 10))
    assert isinstance(awarded, ev.PointsAwarded)
    assert awarded.arrears_repaid == 100
    assert (state.active, state.arrears) == (0, 69)
    # ... and by a sale's lot when it activates
    sale(state, "O2", (line("L1", 10000),), now=sh(2026, 3, 23, 10))
    activated = [e for e in advance(state, sh(2026, 3, 30, 10)) if isinstance(e, ev.LotActivated)]
    assert activated == [ev.LotActivated(at=sh(2026, 3, 30, 10), lot_id="P-O2", points=100, arrears_repaid=69)]
    assert (state.active, state.arrears) == (31, 0)


def test_take_back_beyond_the_balance_is_forgiven_under_cap_at_balance() -> None:
    document = POLICY.model_dump(mode="json")
    document["refunds"]["clawback"] = "cap_at_balance"
    history = PolicyHistory.starting_with(policy_from_data(document), datetime(2020, 1, 1, tzinfo=SH))
    state = member()
    run(state, RecordPurchase("m1", "O1", (line("L1", 10000),), 10000), sh(2026, 3, 10), history=history)
    fold(state, tick(state, Context(now=sh(2026, 3, 18), at=sh(2026, 3, 18), policies=history)))
    run(state, HoldPoints("m1", "H1", "X", 60, 100_000), sh(2026, 3, 18), history=history)
    run(state, CommitHold("m1", "H1"), sh(2026, 3, 18), history=history)
    [e] = run(state, RefundPurchase("m1", "O1", "R1"), sh(2026, 3, 19), history=history)
    assert isinstance(e, ev.PurchaseRefunded)
    assert (e.points_taken, pairs(e.debits), e.arrears_added, e.forgiven, e.clawback) == (100, [("P-O1", 40)], 0, 60, "cap_at_balance")
    assert state.arrears == 0


def test_take_back_skips_the_held_part_of_the_own_lot_and_lots_already_expired() -> None:
    state = member()
    sale(state, "O1", (line("L1", 10000),), now=sh(2026, 3, 10, 10))
    advance(state, sh(2026, 3, 18))
    a = lot_of(adjust(state, 30, sh(2026, 3, 18, 1)))
    held(state, "H1", 70, sh(2026, 3, 18, 2))  # 70 of the sale's own lot are held
    e = refund(state, "R1", sh(2026, 3, 18, 2, 5), ("L1", 5000))
    assert e.points_taken == 50
    assert pairs(e.debits) == [("P-O1", 30), (a, 20)]


def test_points_that_paid_for_an_order_come_back_latest_expiring_first_in_proportion_to_the_money_refunded() -> None:
    state = member()
    a2 = lot_of(adjust(state, 50, sh(2026, 2, 21, 10)))  # expires end of February 2027
    a3 = lot_of(adjust(state, 100, sh(2026, 3, 5, 10)))  # expires end of March 2027
    hold = held(state, "H1", 120, sh(2026, 3, 6), order_total_fen=11200, order_id="O1")
    assert hold.cap_points == 1120
    run(state, CommitHold("m1", "H1"), sh(2026, 3, 6))
    assert state.redemptions["O1"].debits == [(a2, 50), (a3, 70)]
    run(state, RecordPurchase("m1", "O1", (line("L1", 10000),), 11200, points_paid=120), sh(2026, 3, 6))
    first = refund(state, "R1", sh(2026, 3, 7), ("L1", 3000))
    # floor(120 * 3000 / 10000) = 36, into the latest-expiring lot
    assert (first.points_returned, pairs(first.returned), first.relot) == (36, [(a3, 36)], None)
    second = refund(state, "R2", sh(2026, 3, 7), ("L1", 3001))
    # floor(120 * 6001 / 10000) = 72: 36 more, 34 filling A-3 back up, then 2 into A-2
    assert (second.points_returned, pairs(second.returned)) == (36, [(a3, 34), (a2, 2)])
    assert (state.lots[a2].remaining, state.lots[a3].remaining) == (2, 100)
    # A-2 expires (with its 2 points) before the last refund: its part comes back as a new lot for 30 days
    advance(state, sh(2027, 3, 5))
    assert state.lots[a2].expired
    now = sh(2027, 3, 5, 10)
    ctx = Context(now=now, at=now, policies=HISTORY)
    [last] = decide(RefundPurchase("m1", "O1", "R3"), state, ctx)
    assert isinstance(last, ev.PurchaseRefunded)
    assert (last.points_returned, pairs(last.returned), pairs(last.relot_sources)) == (48, [], [(a2, 48)])
    assert last.relot is not None
    assert (last.relot.points, last.relot.source, last.relot.order_id) == (48, "refund_return", "O1")
    assert (last.relot.active_at, last.relot.expires_at) == (now, now + timedelta(days=30))
    assert last.relot.lot_id == f"R-{state.version + 1}"


def test_a_refund_of_an_order_paid_only_with_points_returns_them_all() -> None:
    state = member()
    a = lot_of(adjust(state, 100, sh(2026, 3, 5, 10)))
    held(state, "H1", 7, sh(2026, 3, 6), order_total_fen=70, order_id="O1")
    run(state, CommitHold("m1", "H1"), sh(2026, 3, 6))
    run(state, RecordPurchase("m1", "O1", (line("L1", 0),), 70, points_paid=7), sh(2026, 3, 6))
    e = refund(state, "R1", sh(2026, 3, 7))
    assert (e.points_returned, pairs(e.returned), e.points_taken, e.growth_taken) == (7, [(a, 7)], 0, 0)
    assert state.active == 100


def test_a_refund_is_judged_under_the_policy_in_force_when_it_is_recorded() -> None:
    document = POLICY.model_dump(mode="json")
    document["refunds"]["clawback"] = "cap_at_balance"
    base = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
    history = base.with_version(PolicyVersion(2, sh(2026, 3, 7), policy_from_data(document)))
    state = member()
    run(state, RecordPurchase("m1", "O1", (line("L1", 10000),), 10000), sh(2026, 3, 6), history=history)
    [e] = run(state, RefundPurchase("m1", "O1", "R1", (RefundLine("L1", 5000),)), sh(2026, 3, 8), history=history)
    assert isinstance(e, ev.PurchaseRefunded)
    assert (e.policy_version, e.clawback, e.points_taken) == (2, "cap_at_balance", 50)


def test_time_everywhere_is_utc_aware() -> None:
    assert sh(2026, 3, 11).astimezone(UTC) == datetime(2026, 3, 10, 16, tzinfo=UTC)


# -- merging members ---------------------------------------------------------------------------------------------


def other_member(member_id: str, at: datetime = ENROLLED) -> MemberState:
    state = MemberState(program_id="ls", member_id=member_id)
    return fold(state, [ev.MemberEnrolled(at=at, member_id=member_id, identities=("card:9",), tier="regular", policy_version=1)])


def test_a_merge_moves_the_unexpired_lots_with_their_dates_arrears_growth_and_referrals() -> None:
    target = member()
    source = other_member("m2")
    # the source: a spent lot, a pending sale, an active referral lot, and an expired lot
    run_as = Context(now=sh(2026, 3, 1, 10), at=sh(2026, 3, 1, 10), policies=HISTORY)
    fold(source, decide(AdjustPoints("m2", 10, "GOODWILL", "n", "op"), source, run_as))
    spent = next(iter(source.lots))
    fold(source, decide(AdjustPoints("m2", -10, "FIX", "n", "op"), source, run_as))
    fold(source, decide(AwardPoints("m2", "referral", "inv-1"), source, replace(run_as, invitee=invited("inv-1"))))
    referral = next(lot_id for lot_id in source.lots if lot_id != spent)
    sale_ctx = Context(now=sh(2026, 3, 2, 10), at=sh(2026, 3, 2, 10), policies=HISTORY)
    fold(source, decide(RecordPurchase("m2", "O1", (line("L1", 25000),), 25000), source, sale_ctx))
    source.arrears = 7
    now = sh(2026, 3, 3, 10)
    target_events, source_events = merge(MergeMembers("m1", "m2"), target, source, Context(now=now, at=now, policies=HISTORY))
    absorbed = target_events[0]
    assert isinstance(absorbed, ev.MemberAbsorbed)
    assert [(t.lot_id, t.source_lot_id, t.points, t.active) for t in absorbed.lots] == [
        (f"M-m2-{referral}", referral, 200, True), ("M-m2-P-O1", "P-O1", 250, False),
    ]
    moved = absorbed.lots[1]
    assert (moved.occurred_at, moved.active_at, moved.expires_at) == (sh(2026, 3, 2, 10), sh(2026, 3, 9, 10), sh(2027, 4, 1))
    assert (absorbed.from_member_id, absorbed.arrears, absorbed.identities) == ("m2", 7, ("card:9",))
    assert [(g.at, g.amount) for g in absorbed.growth] == [(sh(2026, 3, 1, 10), 200), (sh(2026, 3, 2, 10), 250)]
    assert absorbed.referrals == (sh(2026, 3, 1, 10),)
    assert source_events == [ev.MemberMerged(at=now, into_member_id="m1", points_moved=450, arrears_moved=7)]
    # 450 growth and one referral move: not enough for Silver (2,000 or 3 referrals)
    assert not [e for e in target_events if isinstance(e, ev.TierChanged)]


def test_a_merge_upgrades_the_survivor_on_the_growth_it_brings() -> None:
    target = member()
    source = other_member("m2")
    at = sh(2026, 3, 2, 10)
    fold(source, decide(RecordPurchase("m2", "O1", (line("L1", 150000),), 150000), source, Context(now=at, at=at, policies=HISTORY)))
    fold(target, decide(RecordPurchase("m1", "O1", (line("L1", 50000),), 50000), target, Context(now=at, at=at, policies=HISTORY)))
    now = sh(2026, 3, 3, 10)
    target_events, _ = merge(MergeMembers("m1", "m2"), target, source, Context(now=now, at=now, policies=HISTORY))
    [changed] = [e for e in target_events if isinstance(e, ev.TierChanged)]
    assert (changed.from_tier, changed.to_tier, changed.growth_in_window) == ("regular", "silver", 2000)


def test_a_member_with_open_holds_or_itself_cannot_be_merged() -> None:
    target = member()
    source = other_member("m2")
    now = sh(2026, 3, 3, 10)
    ctx = Context(now=now, at=now, policies=HISTORY)
    with pytest.raises(InvalidCommand) as caught:
        merge(MergeMembers("m1", "m1"), target, target, ctx)
    assert caught.value.field == "source_member_id"
    fold(source, decide(AdjustPoints("m2", 10, "GOODWILL", "n", "op"), source, ctx))
    fold(source, decide(HoldPoints("m2", "H1", "X", 5, 10000), source, ctx))
    with pytest.raises(Refusal) as refusal:
        merge(MergeMembers("m1", "m2"), target, source, ctx)
    assert (refusal.value.reason, refusal.value.metadata) == ("HOLDS_OPEN", {"member_id": "m2", "open_holds": "1"})
    with pytest.raises(NotFound):
        merge(MergeMembers("m1", "m3"), target, MemberState(program_id="ls", member_id="m3"), ctx)


# -- operator overrides ------------------------------------------------------------------------------------------


def test_a_temporary_upgrade_must_be_above_the_earned_tier_and_grants_the_perks_of_the_tier() -> None:
    state = member()
    now = sh(2026, 3, 3, 10)
    ends = now + timedelta(days=7)
    refusal = refused(state, OverrideTier("m1", "regular", "temporary_upgrade", ends, "invited friends", "op-1"), now)
    assert (refusal.reason, refusal.metadata) == ("NOT_AN_UPGRADE", {"tier": "regular", "earned_tier": "regular"})
    events = run(state, OverrideTier("m1", "gold", "temporary_upgrade", ends, "invited friends", "op-1"), now)
    assert events[0] == ev.TierOverrideSet(
        at=now, tier="gold", kind="temporary_upgrade", ends_at=ends, reason="invited friends", operator_id="op-1"
    )
    assert sorted(e.benefit for e in events if isinstance(e, ev.EntitlementGranted)) == ["parenting_consultant", "priority_trial"]
    # an override may also set a tier below the earned one: nothing is granted, nothing to revoke at regular
    down = run(state, OverrideTier("m1", "regular", "override", ends, "support case", "op-2"), now)
    assert isinstance(down[0], ev.TierOverrideSet) and down[0].kind == "override"
    assert sorted(e.entitlement_id.split("/")[1].split("-")[1] for e in down if isinstance(e, ev.EntitlementRevoked)) == [
        "parenting_consultant", "priority_trial",
    ]


# -- cap usage and the earning context --------------------------------------------------------------------------


def test_cap_usage_reports_a_month_only_cap_and_counts_through_a_moment_or_the_whole_period() -> None:
    state = member()
    award(state, "referral", sh(2026, 3, 10, 10), reference="a", invitee=invited("a"))
    award(state, "referral", sh(2026, 3, 20, 10), reference="b", invitee=invited("b"))
    [month] = cap_usage(state, POLICY, "referrals", sh(2026, 3, 15))
    assert (month.period, month.limit, month.used, month.remaining, month.resets_at) == ("MONTH", 10, 2, 8, sh(2026, 4, 1))
    [through] = cap_usage(state, POLICY, "referrals", sh(2026, 3, 15), through=True)
    assert through.used == 1
    [at_award] = cap_usage(state, POLICY, "referrals", sh(2026, 3, 20, 10), through=True)
    assert at_award.used == 2
    day, month = cap_usage(state, POLICY, "reviews", sh(2026, 3, 31, 23, 59))
    assert (day.period, day.limit, day.resets_at, month.period, month.limit, month.resets_at) == (
        "DAY", 3, sh(2026, 4, 1), "MONTH", 20, sh(2026, 4, 1),
    )
    assert cap_usage(state, POLICY, "nope", sh(2026, 3, 15)) == []


def test_a_sale_is_judged_with_the_members_birth_month_card_and_override_at_its_business_time() -> None:
    state = member()
    ctx = Context(now=sh(2026, 3, 10, 10), at=sh(2026, 3, 10, 10), policies=HISTORY, profile=Profile(birth_month=3))
    fold(state, decide(RecordPurchase("m1", "O1", (line("L1", 1000),), 1000), state, ctx))
    assert (state.orders["O1"].lines["L1"].earned, state.lots["P-O1"].amount) == (20, 20)  # birthday month x2
    recorded = only(run(state, OverrideTier("m1", "gold", "temporary_upgrade", sh(2026, 3, 20), "r", "op"), sh(2026, 3, 11)), ev.TierOverrideSet)
    assert recorded.at == sh(2026, 3, 11)
    gold = only(sale(state, "O2", (line("L1", 1000),), now=sh(2026, 3, 12, 10)), ev.PurchaseRecorded)
    assert isinstance(gold, ev.PurchaseRecorded)
    assert (gold.tier, gold.multiplier_rule, gold.points) == ("gold", "tier:gold", 15)
    # a late sale from before the upgrade is judged as a regular member
    late = only(sale(state, "O3", (line("L1", 1000),), now=sh(2026, 3, 12, 11), at=sh(2026, 3, 10, 9)), ev.PurchaseRecorded)
    assert isinstance(late, ev.PurchaseRecorded)
    assert (late.tier, late.points) == ("regular", 10)
