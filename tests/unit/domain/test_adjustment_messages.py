"""Manual adjustments refused, exactly as the operator receives them (field or reason, and message), and a
one-point adjustment repaying a point of arrears."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

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


def invalid(command: cmd.AdjustPoints) -> tuple[str, str]:
    with pytest.raises(InvalidCommand) as caught:
        decide(command, member(), CTX)
    return caught.value.field, caught.value.message


@pytest.mark.parametrize(
    ("reason_code", "note", "operator_id", "field"),
    [(" ", "n", "op", "reason_code"), ("FIX", "", "op", "note"), ("FIX", "n", "  ", "context.operator_id")],
)
def test_an_adjustment_without_a_reason_code_a_note_or_an_operator_says_which_is_required(
    reason_code: str, note: str, operator_id: str, field: str
) -> None:
    assert invalid(cmd.AdjustPoints("m1", 5, reason_code, note, operator_id)) == (
        field,
        "is required for an adjustment",
    )


def test_an_adjustment_of_zero_points_is_invalid_saying_it_must_not_be_zero() -> None:
    assert invalid(cmd.AdjustPoints("m1", 0, "FIX", "n", "op")) == ("points", "must not be zero")


def test_removing_more_than_the_available_points_is_refused_saying_both_numbers() -> None:
    state = member()
    run(state, cmd.AdjustPoints("m1", 20, "GOODWILL", "opening", "op"))
    with pytest.raises(Refusal) as caught:
        decide(cmd.AdjustPoints("m1", -21, "FIX", "n", "op"), state, CTX)
    refusal = caught.value
    assert refusal.reason == "INSUFFICIENT_POINTS"
    assert refusal.message == "cannot remove 21 points; 20 available"
    assert refusal.metadata == {"requested": "21", "available": "20"}


def test_a_one_point_adjustment_repays_one_point_of_arrears_first() -> None:
    state = member()
    run(state, cmd.AdjustPoints("m1", -3, "FIX", "n", "op", allow_arrears=True))
    assert state.arrears == 3
    [adjusted] = run(state, cmd.AdjustPoints("m1", 1, "GOODWILL", "n", "op"))
    assert isinstance(adjusted, ev.PointsAdjusted)
    assert (adjusted.arrears_repaid, state.arrears, state.active) == (1, 2, 0)
