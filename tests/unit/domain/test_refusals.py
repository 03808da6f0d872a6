"""Refusals carry the public reason codes and metadata keys of docs/errors.md; behaviour caps and lifetime totals."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import (
    AdjustPoints,
    AwardPoints,
    CommitHold,
    HoldPoints,
    MemberCommand,
    ReleaseHold,
)
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.earning import cap_usage
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout, reference_required

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def run(state: MemberState, command: MemberCommand, now: datetime, at: datetime | None = None) -> list[ev.MemberEvent]:
    """Apply what fell due up to ``now``, then decide the command and apply its events (as the writer does)."""
    ctx = Context(now=now, at=at or now, policies=HISTORY)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


def member(member_id: str = "m1") -> MemberState:
    state = MemberState(program_id="ls", member_id=member_id)
    return fold(state, [ev.MemberEnrolled(at=T0, member_id=member_id, identities=(), tier="regular", policy_version=1)])


def refused(state: MemberState, command: MemberCommand, now: datetime, at: datetime | None = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        run(state, command, now, at)
    return caught.value


def credit(state: MemberState, points: int, now: datetime = T0) -> None:
    run(state, AdjustPoints(member_id=state.member_id, points=points, reason_code="GOODWILL", note="n", operator_id="op"), now)


def test_behaviour_cap_refusal_names_the_behaviour_the_period_and_when_it_resets() -> None:
    state = member()
    run(state, AwardPoints(member_id="m1", behaviour="check_in", reference=""), T0)
    [day] = cap_usage(state, POLICY, "check_in", T0, through=True)
    assert (day.period, day.limit, day.used, day.remaining) == ("DAY", 1, 1, 0)
    assert day.resets_at == datetime(2026, 3, 11, tzinfo=SH)
    refusal = refused(state, AwardPoints(member_id="m1", behaviour="check_in", reference=""), T0 + timedelta(hours=1))
    assert refusal.reason == "BEHAVIOUR_CAP_REACHED"
    assert refusal.metadata == {
        "behaviour": "check_in",
        "cap_group": "check_in",
        "period": "DAY",
        "limit": "1",
        "used": "1",
        "resets_at": "2026-03-10T16:00:00Z",
    }


def test_a_reference_is_awarded_once_per_behaviour() -> None:
    state = member()
    run(state, AwardPoints(member_id="m1", behaviour="review", reference="R-1"), T0)
    refusal = refused(state, AwardPoints(member_id="m1", behaviour="review", reference="R-1"), T0 + timedelta(hours=1))
    assert (refusal.reason, refusal.metadata) == ("REFERENCE_ALREADY_AWARDED", {"behaviour": "review", "reference": "R-1"})
    run(state, AwardPoints(member_id="m1", behaviour="review_with_photos", reference="R-1"), T0 + timedelta(hours=2))


def test_an_award_names_what_it_rewards_except_a_check_in() -> None:
    state = member()
    with pytest.raises(InvalidCommand) as caught:
        run(state, AwardPoints(member_id="m1", behaviour="review", reference=""), T0)
    assert caught.value.field == "reference"
    assert state.active == 0 and state.version == 1  # nothing was awarded
    run(state, AwardPoints(member_id="m1", behaviour="check_in", reference=""), T0)
    assert state.active == 1


def test_whether_a_reference_is_needed_is_the_behaviours_rule() -> None:
    doc = POLICY.model_copy(deep=True)
    doc.behaviours["review"] = doc.behaviours["review"].model_copy(update={"reference": "optional"})
    doc.behaviours["check_in"] = doc.behaviours["check_in"].model_copy(update={"reference": "required"})
    assert reference_required(doc, "check_in") and not reference_required(doc, "review")
    legacy = POLICY.model_copy(deep=True)
    legacy.behaviours["check_in"] = legacy.behaviours["check_in"].model_copy(update={"reference": None})
    assert not reference_required(legacy, "check_in")  # documents from before the field: check-in needs none
    assert reference_required(legacy, "review")


def test_lifetime_earned_counts_positive_adjustments_only() -> None:
    state = member()
    run(state, AwardPoints(member_id="m1", behaviour="check_in", reference=""), T0)
    credit(state, 25)
    run(state, AdjustPoints(member_id="m1", points=-5, reason_code="FIX", note="n", operator_id="op"), T0)
    assert (state.active, state.lifetime_earned, state.lifetime_adjusted) == (21, 26, 20)


def test_commit_beyond_the_hold_is_insufficient_points_and_an_expired_hold_differs_for_commit_and_release() -> None:
    state = member()
    credit(state, 500)
    run(state, HoldPoints(member_id="m1", hold_id="H-1", order_id="O-1", points=50, order_total_fen=1_000), T0)
    refusal = refused(state, CommitHold(member_id="m1", hold_id="H-1", points=60), T0)
    assert (refusal.reason, refusal.metadata) == ("INSUFFICIENT_POINTS", {"available": "50", "requested": "60", "held": "50"})

    later = T0 + timedelta(hours=1)  # past the 15-minute hold
    expired = refused(state, CommitHold(member_id="m1", hold_id="H-1", points=None), later)
    assert (expired.reason, expired.metadata) == (
        "HOLD_EXPIRED", {"hold_id": "H-1", "expired_at": "2026-03-10T02:15:00Z"}
    )
    release = refused(state, ReleaseHold(member_id="m1", hold_id="H-1"), later)
    assert (release.reason, release.metadata) == ("HOLD_NOT_OPEN", {"hold_id": "H-1", "status": "EXPIRED"})


def test_redemption_cap_counts_what_the_order_already_holds() -> None:
    state = member()
    credit(state, 500)
    run(state, HoldPoints(member_id="m1", hold_id="H-1", order_id="O-1", points=60, order_total_fen=1_000), T0)
    refusal = refused(state, HoldPoints(member_id="m1", hold_id="H-2", order_id="O-1", points=50, order_total_fen=1_000), T0)
    assert refusal.reason == "REDEMPTION_CAP_EXCEEDED"
    assert refusal.metadata == {
        "cap_points": "100",
        "already_held": "60",
        "requested": "50",
        "order_total_fen": "1000",
        "cap_share": "0.1",
        "tier": "regular",
    }
    run(state, HoldPoints(member_id="m1", hold_id="H-3", order_id="O-1", points=40, order_total_fen=1_000), T0)
