"""Holds and purchases refused exactly as the caller receives them: a hold id used twice, an order of one fen (valid,
but points may pay none of it), a hold judged at a temporary upgrade, and an order recorded twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import NotFound, Refusal
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


def member(points: int = 5_000) -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", points, "GOODWILL", "opening", "op"))
    return state


def refused(command: cmd.MemberCommand, state: MemberState) -> Any:
    with pytest.raises(Refusal) as caught:
        decide(command, state, CTX)
    return caught.value


def test_a_hold_id_used_twice_is_refused_naming_it() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 100, 100_00))
    r = refused(cmd.HoldPoints("m1", "H1", "O2", 100, 100_00), state)
    assert (r.reason, r.message, r.metadata) == ("HOLD_EXISTS", "hold H1 already exists", {"id": "H1"})


def test_an_order_of_one_fen_is_valid_but_points_may_pay_none_of_it() -> None:
    r = refused(cmd.HoldPoints("m1", "H1", "O1", 1, 1), member())
    assert (r.reason, r.metadata["cap_points"], r.metadata["order_total_fen"]) == (
        "REDEMPTION_CAP_EXCEEDED",
        "0",
        "1",
    )


def test_a_hold_is_capped_at_the_tier_of_a_temporary_upgrade() -> None:
    state = member()
    run(state, cmd.OverrideTier("m1", "gold", "temporary_upgrade", T0 + timedelta(days=30), "trial", "op"))
    r = refused(cmd.HoldPoints("m1", "H1", "O1", 2_001, 100_00), state)
    assert (r.reason, r.metadata["tier"], r.metadata["cap_points"]) == (
        "REDEMPTION_CAP_EXCEEDED",
        "gold",
        "2000",
    )


def test_an_order_recorded_twice_is_refused_naming_it() -> None:
    state = member()
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=5_000)
    run(state, cmd.RecordPurchase("m1", "O1", (line,), 5_000))
    r = refused(cmd.RecordPurchase("m1", "O1", (line,), 5_000), state)
    assert (r.reason, r.message) == (
        "ORDER_ALREADY_RECORDED",
        "order O1 was already recorded for this member",
    )


def test_an_order_earning_one_point_credits_a_lot_of_one_point() -> None:
    state = member()
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=100)
    [recorded, *_] = run(state, cmd.RecordPurchase("m1", "O1", (line,), 100))
    assert isinstance(recorded, ev.PurchaseRecorded)
    assert recorded.points == 1
    assert recorded.lot is not None and (recorded.lot.lot_id, recorded.lot.points) == ("P-O1", 1)


def test_a_sale_naming_a_hold_not_committed_is_refused_with_the_holds_status() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 100, 100_00))
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=5_000)
    r = refused(cmd.RecordPurchase("m1", "O1", (line,), 100_00, hold_id="H1"), state)
    assert (r.reason, r.message, r.metadata) == (
        "HOLD_NOT_COMMITTED",
        "hold H1 has not paid anything (it is open): commit it first",
        {"hold_id": "H1", "status": "OPEN"},
    )
    run(state, cmd.ReleaseHold("m1", "H1"))
    r = refused(cmd.RecordPurchase("m1", "O1", (line,), 100_00, hold_id="H1"), state)
    assert (r.message, r.metadata) == (
        "hold H1 has not paid anything (it is released): commit it first",
        {"hold_id": "H1", "status": "RELEASED"},
    )


def test_a_sale_naming_an_unknown_hold_is_not_found_by_its_id() -> None:
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=5_000)
    with pytest.raises(NotFound) as caught:
        decide(cmd.RecordPurchase("m1", "O1", (line,), 100_00, hold_id="H9"), member(), CTX)
    assert (caught.value.kind, caught.value.identifier) == ("hold", "H9")
