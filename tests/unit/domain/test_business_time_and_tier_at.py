"""What ``decide`` checks before a rule runs, exactly as the caller sees it: a business time too far ahead of the
program's clock or behind it, the Tick command, a command nothing handles, what enrolment records; and which tier
a member is treated as at a moment when an operator override or a temporary upgrade is in force."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import EnrollMember, MemberCommand, MergeMembers, RecordPurchase, Tick
from ledger.domain.decide import Context, decide, effective_tier, next_due, tick
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState, TierOverride
from policies import OrderLine, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 4, 1, 10, tzinfo=SH)


def run(
    state: MemberState, command: MemberCommand, now: datetime, at: datetime | None = None
) -> list[ev.MemberEvent]:
    ctx = Context(now=now, at=at or now, policies=HISTORY)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


def member() -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, EnrollMember("m1", ()), T0 - timedelta(days=60))
    return state


def sale(order_id: str, paid_fen: int = 10_000) -> RecordPurchase:
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=paid_fen)
    return RecordPurchase("m1", order_id, (line,), paid_fen)


# -- business time --------------------------------------------------------------------------------------------------


def test_a_business_time_more_than_five_minutes_ahead_of_the_clock_is_invalid_naming_occurred_at() -> None:
    with pytest.raises(InvalidCommand) as caught:
        run(member(), sale("O1"), T0, T0 + timedelta(minutes=5, microseconds=1))
    assert (caught.value.field, caught.value.message) == (
        "context.occurred_at",
        "is in the future of the program's clock",
    )


def test_a_sale_more_than_thirty_days_old_is_refused_with_the_window_and_both_times() -> None:
    at = T0 - timedelta(days=30, microseconds=1)
    with pytest.raises(Refusal) as caught:
        run(member(), sale("O1"), T0, at)
    refusal = caught.value
    assert refusal.reason == "OUTSIDE_OFFLINE_WINDOW"
    assert refusal.message == "business time is more than 30 days before the time it is recorded"
    assert refusal.metadata == {
        "occurred_at": "2026-03-02T01:59:59.999999Z",
        "now": "2026-04-01T02:00:00Z",
        "window_days": "30",
        "earliest_allowed": "2026-03-02T02:00:00Z",
    }


def test_a_sale_before_the_programs_first_policy_is_refused_naming_when_the_first_took_effect() -> None:
    starts = T0 - timedelta(days=10)
    history = PolicyHistory.starting_with(POLICY, starts)
    state = MemberState(program_id="p", member_id="m1")
    fold(state, decide(EnrollMember("m1", ()), state, Context(now=T0, at=T0, policies=history)))
    with pytest.raises(Refusal) as caught:
        decide(sale("O1"), state, Context(now=T0, at=T0 - timedelta(days=20), policies=history))
    assert caught.value.reason == "POLICY_NOT_EFFECTIVE_YET"
    assert caught.value.message == "no policy version of this program was in force at that time"
    assert caught.value.metadata == {
        "occurred_at": "2026-03-12T02:00:00Z",
        "first_effective_from": "2026-03-22T02:00:00Z",
    }


def test_a_program_without_any_policy_refuses_enrolment_naming_only_the_time() -> None:
    state = MemberState(program_id="p", member_id="m1")
    with pytest.raises(Refusal) as caught:
        decide(EnrollMember("m1", ()), state, Context(now=T0, at=T0, policies=PolicyHistory()))
    assert caught.value.reason == "POLICY_NOT_EFFECTIVE_YET"
    assert caught.value.metadata == {"occurred_at": "2026-04-01T02:00:00Z"}


# -- what falls due -------------------------------------------------------------------------------------------------


def test_the_next_due_moment_is_asked_again_of_another_programs_policies() -> None:
    state = member()
    without_grants = POLICY.model_dump(mode="json")
    without_grants["grants"] = []
    other = PolicyHistory.starting_with(policy_from_data(without_grants), datetime(2020, 1, 1, tzinfo=SH))
    assert next_due(state, Context(now=T0, at=T0, policies=HISTORY)) is not None  # the grants fall due
    assert next_due(state, Context(now=T0, at=T0, policies=other)) is None  # the same state, nothing due


def test_nothing_falls_due_for_a_member_merged_into_another() -> None:
    state = member()
    assert next_due(state, Context(now=T0, at=T0, policies=HISTORY)) is not None
    fold(state, [ev.MemberMerged(at=T0, into_member_id="m2", points_moved=0, arrears_moved=0, reason=None)])
    assert next_due(state, Context(now=T0, at=T0, policies=HISTORY)) is None


# -- dispatch -------------------------------------------------------------------------------------------------------


def test_a_tick_command_returns_what_fell_due_for_the_member() -> None:
    state = member()
    run(state, sale("O1"), T0)
    events = decide(
        Tick("m1"), state, Context(now=T0 + timedelta(days=7), at=T0 + timedelta(days=7), policies=HISTORY)
    )
    # 100 CNY at x2: the win-back campaign (no activity in the 60 days since enrolment)
    assert events == [ev.LotActivated(at=T0 + timedelta(days=7), lot_id="P-O1", points=200, arrears_repaid=0)]


def test_a_tick_command_for_a_member_never_enrolled_is_not_found() -> None:
    with pytest.raises(NotFound):
        decide(
            Tick("m9"), MemberState(program_id="p", member_id="m9"), Context(now=T0, at=T0, policies=HISTORY)
        )


def test_a_command_decide_has_no_rule_for_is_a_type_error_naming_its_type() -> None:
    with pytest.raises(TypeError) as caught:
        decide(MergeMembers("m1", "m2"), member(), Context(now=T0, at=T0, policies=HISTORY))
    assert str(caught.value) == "no handler for MergeMembers"


# -- enrolment ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [False, True])
def test_enrolment_records_whether_a_profile_was_stored(stored: bool) -> None:
    state = MemberState(program_id="p", member_id="m1")
    [enrolled] = run(state, EnrollMember("m1", (), profile_stored=stored), T0)
    assert isinstance(enrolled, ev.MemberEnrolled)
    assert enrolled.profile_stored is stored
    assert state.no_profile is not stored


# -- the tier at a moment -------------------------------------------------------------------------------------------


def gold_since(since: datetime) -> MemberState:
    """A member who earned Gold at ``since`` (Regular before)."""
    state = MemberState(program_id="p", member_id="m1")
    state.tier = "gold"
    state.tier_history = [(T0 - timedelta(days=60), "regular"), (since, "gold")]
    return state


def lasting(kind: str, tier: str, starts_at: datetime, ends_at: datetime) -> TierOverride:
    return TierOverride(
        tier=tier, kind=kind, starts_at=starts_at, ends_at=ends_at, reason="r", operator_id="op"
    )


def test_an_operator_override_below_the_earned_tier_is_the_tier_while_it_lasts() -> None:
    state = gold_since(T0)
    state.override_history = [lasting("override", "regular", T0 + timedelta(days=1), T0 + timedelta(days=8))]
    assert effective_tier(state, POLICY, T0 + timedelta(days=2)) == "regular"
    assert effective_tier(state, POLICY, T0 + timedelta(days=8)) == "gold"


def test_a_temporary_upgrade_overtaken_by_an_earned_higher_tier_gives_way_to_it() -> None:
    state = gold_since(T0 + timedelta(days=3))
    state.override_history = [lasting("temporary_upgrade", "silver", T0, T0 + timedelta(days=7))]
    assert effective_tier(state, POLICY, T0 + timedelta(days=1)) == "silver"
    assert effective_tier(state, POLICY, T0 + timedelta(days=4)) == "gold"
