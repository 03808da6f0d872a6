"""Lots falling due in one tick: two lots activating together repay arrears in turn, and a lot of one point expires."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, lots_due, tick
from ledger.domain.decide.lots_due import run_due
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


def member() -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    return state


def test_two_lots_activating_in_one_tick_repay_the_arrears_in_turn() -> None:
    state = member()
    for order in ("O1", "O2"):
        line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=50_00)
        run(state, cmd.RecordPurchase("m1", order, (line,), 50_00))
    pending = [lot for lot in state.lots.values() if not lot.activated]
    assert len(pending) == 2 and pending[0].active_at == pending[1].active_at
    state.arrears = 30
    due = run_due(state, pending[0].active_at, CTX)
    assert [(e.points, e.arrears_repaid) for e in due if isinstance(e, ev.LotActivated)] == [
        (50, 30),
        (50, 0),
    ]


def test_a_lot_of_one_point_expires_when_it_is_due() -> None:
    state = member()
    run(state, cmd.AdjustPoints("m1", 1, "GOODWILL", "one point", "op"))
    [lot] = state.lots.values()
    due = run_due(state, lot.expires_at + timedelta(seconds=1), CTX)
    assert due == [ev.LotExpired(at=lot.expires_at, lot_id=lot.lot_id, points=1)]


def test_a_lot_with_one_point_left_expires_when_the_clock_reaches_its_expiry() -> None:
    state = member()
    run(state, cmd.AdjustPoints("m1", 5, "GOODWILL", "five points", "op"))
    run(state, cmd.AdjustPoints("m1", -4, "FIX", "four spent", "op"))
    [lot] = state.lots.values()
    assert lot.remaining == 1
    assert lots_due.next_due(state, CTX) == lot.expires_at
    due = tick(state, Context(now=lot.expires_at, at=lot.expires_at, policies=HISTORY))
    assert ev.LotExpired(at=lot.expires_at, lot_id=lot.lot_id, points=1) in due
