"""A tier's yearly review judges the member's standing from what is recorded: the referrals and growth in the
window, and the last purchase (diamond asks for a recent one)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))


def run(
    state: MemberState, command: cmd.MemberCommand, at: datetime = T0, invitee: MemberState | None = None
) -> None:
    ctx = Context(now=at, at=at, policies=HISTORY, invitee=invitee)
    fold(state, tick(state, ctx))
    fold(state, decide(command, state, ctx))


def member(member_id: str) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    run(state, cmd.EnrollMember(member_id, ()))
    return state


def buy(state: MemberState, order: str, paid_fen: int, at: datetime = T0) -> None:
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=paid_fen)
    run(state, cmd.RecordPurchase(state.member_id, order, (line,), paid_fen), at)


def reviews(state: MemberState, at: datetime) -> list[ev.TierReviewed]:
    events = tick(state, Context(now=at, at=at, policies=HISTORY))
    return [e for e in events if isinstance(e, ev.TierReviewed)]


def test_a_silver_reached_by_referrals_is_reviewed_on_the_referrals_in_the_window() -> None:
    state = member("m1")
    for invitee_id in ("i1", "i2", "i3"):
        invitee = member(invitee_id)
        buy(invitee, f"O-{invitee_id}", 5_000)
        run(state, cmd.AwardPoints("m1", "referral", invitee_id), invitee=invitee)
    assert state.tier == "silver" and state.next_review_at is not None
    later = member("i4")
    buy(later, "O-i4", 5_000)
    run(state, cmd.AwardPoints("m1", "referral", "i4"), T0 + timedelta(days=1), invitee=later)
    [review] = reviews(state, state.next_review_at)
    assert (review.outcome, review.qualifying_tier) == ("notice", "regular")


def test_a_diamond_who_bought_lately_is_kept_at_the_review() -> None:
    state = member("m1")
    buy(state, "O1", 1_000_000)
    assert state.tier == "diamond" and state.next_review_at is not None
    due = state.next_review_at
    buy(state, "O2", 1_000_000, due - timedelta(days=10))
    [review] = reviews(state, due)
    assert (review.outcome, review.qualifying_tier) == ("kept", "diamond")


def silver_by_referrals() -> MemberState:
    state = member("m1")
    for invitee_id in ("i1", "i2", "i3"):
        invitee = member(invitee_id)
        buy(invitee, f"O-{invitee_id}", 5_000)
        run(state, cmd.AwardPoints("m1", "referral", invitee_id), invitee=invitee)
    return state


@pytest.mark.parametrize("kind", ["override", "temporary_upgrade"])
def test_an_override_still_in_force_at_a_review_keeps_its_tier_and_perks(kind: str) -> None:
    state = silver_by_referrals()
    assert state.next_review_at is not None
    due = state.next_review_at
    run(
        state,
        cmd.OverrideTier("m1", "gold", kind, due + timedelta(days=30), "vip", "op"),
        due - timedelta(days=10),
    )
    events = tick(state, Context(now=due, at=due, policies=HISTORY))
    assert not [e for e in events if isinstance(e, ev.EntitlementRevoked)]


def test_perks_renewed_at_a_review_are_numbered_after_the_review() -> None:
    state = member("m1")
    buy(state, "O1", 1_000_000)
    assert state.next_review_at is not None
    due = state.next_review_at
    buy(state, "O2", 1_000_000, due - timedelta(days=10))
    events = tick(state, Context(now=due, at=due, policies=HISTORY))
    renewed = [e.entitlement_id for e in events if isinstance(e, ev.EntitlementGranted) and e.at == due]
    assert [eid.rpartition(".")[2] for eid in renewed] == ["1", "2", "3"]
    assert [eid.rpartition("/")[2].rpartition("-")[0] for eid in renewed] == [
        "E-parenting_consultant",
        "E-priority_trial",
        "E-family_butler",
    ]
