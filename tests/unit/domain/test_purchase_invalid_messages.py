"""Purchases that are invalid, exactly as the caller receives them (field and message)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand) -> None:
    fold(state, tick(state, CTX))
    fold(state, decide(command, state, CTX))


def member() -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    return state


def line(line_id: str = "L1") -> OrderLine:
    return OrderLine(line_id=line_id, sku="SKU-1", category="toys", quantity=1, paid_fen=5_000)


def invalid(command: cmd.RecordPurchase, state: MemberState | None = None) -> tuple[str, str]:
    with pytest.raises(InvalidCommand) as caught:
        decide(command, state or member(), CTX)
    return caught.value.field, caught.value.message


def test_malformed_lines_are_named_by_index() -> None:
    assert invalid(cmd.RecordPurchase("m1", "O1", (), 0)) == ("lines", "an order needs at least one line")
    assert invalid(cmd.RecordPurchase("m1", "O1", (line(), line()), 10_000)) == (
        "lines[1].line_id",
        "duplicate line id 'L1'",
    )


def test_a_hold_committed_for_another_order_or_for_other_points_is_invalid_saying_which() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 100, 100_00))
    run(state, cmd.CommitHold("m1", "H1", None))
    assert invalid(cmd.RecordPurchase("m1", "O2", (line(),), 100_00, hold_id="H1"), state) == (
        "hold_id",
        "hold H1 was committed for order O1, not O2",
    )
    assert invalid(
        cmd.RecordPurchase("m1", "O1", (line(),), 100_00, points_paid=99, hold_id="H1"), state
    ) == (
        "points_paid",
        "must equal the 100 points hold H1 committed (or be 0)",
    )


def test_points_paid_below_zero_is_invalid_naming_points_paid() -> None:
    assert invalid(cmd.RecordPurchase("m1", "O1", (line(),), 5_000, points_paid=-1)) == (
        "points_paid",
        "must not be negative",
    )
