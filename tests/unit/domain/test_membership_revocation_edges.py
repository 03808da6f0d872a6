"""What a card's end or cancellation revokes: the monthly coupons of its own term, from the term's first
instant on, and nothing another plan granted."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")


def sh(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SH)


def changed(edit: Any) -> PolicyHistory:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    edit(document)
    policy: Policy = policy_from_data(document)
    return PolicyHistory.starting_with(policy, sh(2020, 1, 1))


def run(
    state: MemberState, policies: PolicyHistory, now: datetime, command: Any = None
) -> list[ev.MemberEvent]:
    context = Context(now=now, at=now, policies=policies)
    events = tick(state, context)
    fold(state, events)
    if command is not None:
        decided = decide(command, state, context)
        fold(state, decided)
        events += decided
    return events


def member(policies: PolicyHistory, at: datetime) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, policies, at, cmd.EnrollMember("m1", ()))
    return state


def revoked(events: list[ev.MemberEvent]) -> set[str]:
    return {e.entitlement_id for e in events if isinstance(e, ev.EntitlementRevoked)}


def test_a_renewal_starting_at_midnight_on_the_1st_gets_that_days_coupon_and_its_lapse_revokes_it() -> None:
    """A card bought at 00:00 on 1 March 2026 is renewed: the renewal's term starts at 00:00 on 1 March 2027,
    a grant moment, and that coupon is the renewal's (valid 400 days here, revoked when a term lapses)."""

    def long_coupons_revoked_on_lapse(document: dict[str, Any]) -> None:
        coupon = document["benefits"]["black_gold_monthly_coupon"]
        coupon["validity"] = {"kind": "days", "days": 400}
        coupon["revoke_on"] = ["membership_cancelled", "membership_lapsed"]

    policies = changed(long_coupons_revoked_on_lapse)
    state = member(policies, sh(2026, 2, 20))
    run(state, policies, sh(2026, 3, 1), cmd.PurchaseMembership("m1", "BG1", "black_gold", 19900))
    run(state, policies, sh(2026, 12, 1, 10), cmd.PurchaseMembership("m1", "BG2", "black_gold", 19900))
    assert (state.memberships["BG2"].term_start, state.memberships["BG2"].term_end) == (
        sh(2027, 3, 1),
        sh(2028, 3, 1),
    )
    events = run(state, policies, sh(2027, 3, 1, 12))
    first = [
        e for e in events if isinstance(e, ev.EntitlementGranted) and e.benefit == "black_gold_monthly_coupon"
    ][-1:]
    assert [(e.at, e.valid_until) for e in first] == [(sh(2027, 3, 1), sh(2028, 4, 4))]
    for month in range(4, 13):
        run(state, policies, sh(2027, month, 2))
    lapse = run(state, policies, sh(2028, 3, 1, 12))
    assert [e.membership_id for e in lapse if isinstance(e, ev.MembershipLapsed)] == ["BG2"]
    assert first[0].entitlement_id in revoked(lapse)


def test_cancelling_a_card_leaves_what_another_plans_monthly_grant_gave() -> None:
    """A gold card grants free delivery on the 1st of every month; cancelling a black-gold card (whose own
    start grants include free delivery) revokes the black-gold grants only."""

    def gold_card_with_monthly_free_delivery(document: dict[str, Any]) -> None:
        document["memberships"]["gold_card"] = dict(document["memberships"]["black_gold"], name="Gold card")
        document["grants"].append(
            {
                "benefit": "free_delivery",
                "schedule": "membership_monthly",
                "day_of_month": 1,
                "plan": "gold_card",
            }
        )

    policies = changed(gold_card_with_monthly_free_delivery)
    state = member(policies, sh(2026, 3, 1, 12))
    run(state, policies, sh(2026, 3, 10, 12), cmd.PurchaseMembership("m1", "G1", "gold_card", 19900))
    run(state, policies, sh(2026, 3, 28, 12), cmd.PurchaseMembership("m1", "BG1", "black_gold", 19900))
    run(state, policies, sh(2026, 4, 1, 12))
    gold_delivery = [
        e.entitlement_id
        for e in state.entitlements.values()
        if e.source.startswith("schedule:membership_monthly:free")
    ]
    black_gold = {
        e.entitlement_id
        for e in state.entitlements.values()
        if e.source.startswith("membership:BG1:") or e.benefit == "black_gold_monthly_coupon"
    }
    assert len(gold_delivery) == 1
    assert "black_gold_monthly_coupon" in {state.entitlements[i].benefit for i in black_gold}
    cancelled = run(state, policies, sh(2026, 4, 2, 12), cmd.CancelMembership("m1", "BG1", "changed my mind"))
    assert revoked(cancelled) == {
        i for i in black_gold if "membership_cancelled" in state.entitlements[i].revoke_on
    }
    assert gold_delivery[0] not in revoked(cancelled)
