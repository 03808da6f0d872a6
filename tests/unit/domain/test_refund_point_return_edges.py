"""A refund of part of an order paid partly with points gives back its share of those points, down to one point."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.commands import RefundLine
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand) -> list[ev.MemberEvent]:
    fold(state, tick(state, CTX))
    events = decide(command, state, CTX)
    fold(state, events)
    return events


def paid_with_100_points() -> MemberState:
    """A sale of 100 CNY, 92 paid in money (one line) and 100 points redeemed through a committed hold."""
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    run(state, cmd.HoldPoints("m1", "H1", "O1", 100, 100_00))
    run(state, cmd.CommitHold("m1", "H1", None))
    line = OrderLine(line_id="l1", sku="SKU-1", category="toys", quantity=1, paid_fen=92_00)
    run(state, cmd.RecordPurchase("m1", "O1", (line,), 100_00, hold_id="H1"))
    return state


def test_a_refund_whose_share_of_the_points_is_one_point_gives_that_point_back() -> None:
    state = paid_with_100_points()
    [refunded] = [
        e
        for e in run(state, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("l1", 92),)))
        if isinstance(e, ev.PurchaseRefunded)
    ]
    assert refunded.points_returned == 1
    assert sum(d.points for d in refunded.returned + refunded.relot_sources) == 1


def test_a_refund_whose_share_is_below_one_point_gives_none_back() -> None:
    state = paid_with_100_points()
    [refunded] = [
        e
        for e in run(state, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("l1", 91),)))
        if isinstance(e, ev.PurchaseRefunded)
    ]
    assert (refunded.points_returned, refunded.returned, refunded.relot_sources) == (0, (), ())


def test_a_take_back_of_one_point_comes_from_the_orders_own_lot() -> None:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    line = OrderLine(line_id="l1", sku="SKU-1", category="toys", quantity=1, paid_fen=50_00)
    run(state, cmd.RecordPurchase("m1", "O1", (line,), 50_00))
    own = state.orders["O1"].lot_id
    assert own is not None
    events = run(state, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("l1", 100),)))
    [refunded] = [e for e in events if isinstance(e, ev.PurchaseRefunded)]
    assert refunded.points_taken == 1
    assert refunded.debits == (ev.LotDebit(lot_id=own, points=1),)


def test_a_take_back_never_draws_on_points_reserved_by_an_open_hold() -> None:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 100, "GOODWILL", "opening", "op"))
    line = OrderLine(line_id="l1", sku="SKU-1", category="toys", quantity=1, paid_fen=50_00)
    run(state, cmd.RecordPurchase("m1", "O1", (line,), 50_00))
    own = state.lots[state.orders["O1"].lot_id or ""]
    later = Context(now=own.active_at, at=own.active_at, policies=HISTORY)

    def at_later(command: cmd.MemberCommand) -> list[ev.MemberEvent]:
        fold(state, tick(state, later))
        events = decide(command, state, later)
        fold(state, events)
        return events

    at_later(cmd.HoldPoints("m1", "H1", "O8", 100, 100_000))  # every opening point reserved
    at_later(cmd.HoldPoints("m1", "H2", "O9", own.remaining, 100_000))
    at_later(cmd.CommitHold("m1", "H2", None))  # the order's own points spent
    [refunded] = [
        e for e in at_later(cmd.RefundPurchase("m1", "O1", "R1")) if isinstance(e, ev.PurchaseRefunded)
    ]
    assert refunded.points_taken == own.amount
    assert refunded.debits == ()
    assert refunded.arrears_added + refunded.forgiven == own.amount
