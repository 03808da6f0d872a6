"""Tiers: upgrades at the crossing event, the yearly review with its notice and grace, operator overrides."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import OverrideTier, Profile
from ledger.domain.decide import Context, decide, effective_tier, tick, tiers
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, PolicyVersion, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def context(now: datetime, at: datetime | None = None, history: PolicyHistory = HISTORY) -> Context:
    return Context(now=now, at=at or now, policies=history, profile=Profile())


def enrolled(at: datetime, member_id: str = "m1") -> MemberState:
    state = MemberState(program_id="ls", member_id=member_id)
    return fold(state, [ev.MemberEnrolled(at=at, member_id=member_id, identities=(), tier="regular", policy_version=1)])


def advance(state: MemberState, now: datetime, history: PolicyHistory = HISTORY) -> list[ev.MemberEvent]:
    """Run everything due up to ``now`` (what the write path does before every command)."""
    events = tick(state, context(now, history=history))
    fold(state, events)
    return events


def sale(
    state: MemberState, at: datetime, growth: int, *, now: datetime | None = None, history: PolicyHistory = HISTORY
) -> list[ev.MemberEvent]:
    """A sale adding ``growth`` at business time ``at``, recorded at ``now``, with the upgrade it causes."""
    now = now or at
    advance(state, now, history)
    ctx = context(now, at, history)
    events: list[ev.MemberEvent] = [
        ev.PurchaseRecorded(
            at=at,
            order_id=f"O-{state.version + 1}",
            lines=(),
            order_total_fen=growth * 100,
            points_paid=0,
            tier=state.tier,
            multiplier="1",
            multiplier_rule="tier:regular",
            candidates=(),
            points=0,
            growth=growth,
            lot=None,
            policy_version=ctx.version.version,
        )
    ]
    events += tiers.upgrade(state, ctx, growth=growth, purchase_at=at)
    fold(state, events)
    return events


def behaviour(state: MemberState, at: datetime, growth: int, *, referral: bool = False) -> list[ev.MemberEvent]:
    """A behaviour award (no purchase) adding ``growth``; a referral counts towards Silver."""
    advance(state, at)
    ctx = context(at)
    events: list[ev.MemberEvent] = [
        ev.PointsAwarded(
            at=at,
            behaviour="referral" if referral else "workshop",
            reference=f"R-{state.version + 1}",
            cap_group="referrals" if referral else "events",
            points=0,
            growth=growth,
            counts_as_referral=referral,
            lot=None,
            arrears_repaid=0,
            policy_version=1,
        )
    ]
    events += tiers.upgrade(state, ctx, growth=growth, referral=referral)
    fold(state, events)
    return events


def has_notice(state: MemberState) -> bool:
    return state.downgrade_notice is not None


def of_type(events: list[ev.MemberEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def perks(state: MemberState, at: datetime) -> set[str]:
    return {
        e.benefit
        for e in state.entitlements.values()
        if e.source.startswith("tier:") and e.revoked_at is None and e.valid_from <= at < e.valid_until
    }


def with_changes(**changes: Any) -> Policy:
    """Little Sprout with some fields of its document replaced (dotted paths: ``tiers.levels.1.min_growth``)."""
    document = POLICY.model_dump(mode="json")
    for path, value in changes.items():
        node: Any = document
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return policy_from_data(document)


# -- upgrades ---------------------------------------------------------------------------------------------------


def test_upgrade_to_silver_when_growth_crosses_2000() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    assert of_type(sale(state, sh(2026, 2, 1, 12), 1500), ev.TierChanged) == []
    assert state.tier == "regular"
    events = sale(state, sh(2026, 3, 1, 12), 499)
    assert of_type(events, ev.TierChanged) == []
    assert state.tier == "regular"

    events = sale(state, sh(2026, 3, 2, 12), 1)
    [changed] = of_type(events, ev.TierChanged)
    assert (changed.from_tier, changed.to_tier, changed.reason) == ("regular", "silver", "upgrade")
    assert changed.at == sh(2026, 3, 2, 12)
    assert changed.growth_in_window == 2000
    assert changed.next_review_at == sh(2027, 3, 2, 12)
    assert state.tier == "silver" and state.tier_since == sh(2026, 3, 2, 12)
    assert state.next_review_at == sh(2027, 3, 2, 12)
    [perk] = of_type(events, ev.EntitlementGranted)
    assert perk.benefit == "parenting_consultant"
    assert perk.source == "tier:silver:parenting_consultant"
    assert perk.entitlement_id.startswith("m1/")


def test_one_sale_crossing_5000_goes_straight_to_gold() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 2, 1, 12), 1000)
    events = sale(state, sh(2026, 2, 2, 12), 4000)
    [changed] = of_type(events, ev.TierChanged)
    assert (changed.from_tier, changed.to_tier) == ("regular", "gold")
    assert changed.growth_in_window == 5000
    assert state.tier == "gold"
    assert {e.benefit for e in of_type(events, ev.EntitlementGranted)} == {"parenting_consultant", "priority_trial"}
    assert all(e.source == f"tier:gold:{e.benefit}" for e in of_type(events, ev.EntitlementGranted))


def test_growth_older_than_the_window_does_not_count() -> None:
    state = enrolled(sh(2025, 1, 5, 10))
    sale(state, sh(2025, 2, 1, 12), 1900)
    # 2026-02-01 12:00 is exactly 12 months later: the window (2025-02-01 12:00, 2026-02-01 12:00] excludes it.
    assert of_type(sale(state, sh(2026, 2, 1, 12), 200), ev.TierChanged) == []
    assert state.tier == "regular"
    assert of_type(sale(state, sh(2026, 2, 1, 13), 1800), ev.TierChanged)[0].to_tier == "silver"


def test_silver_by_three_referrals_in_the_window() -> None:
    state = enrolled(sh(2024, 1, 5, 10))
    behaviour(state, sh(2024, 6, 1, 10), 200, referral=True)  # outside the window of the third one
    behaviour(state, sh(2025, 6, 1, 10), 200, referral=True)
    assert of_type(behaviour(state, sh(2025, 7, 1, 10), 200, referral=True), ev.TierChanged) == []
    # Workshops add growth, not referrals.
    assert of_type(behaviour(state, sh(2025, 7, 2, 10), 100), ev.TierChanged) == []
    events = behaviour(state, sh(2025, 8, 1, 10), 200, referral=True)
    [changed] = of_type(events, ev.TierChanged)
    assert changed.to_tier == "silver"
    assert changed.referrals_in_window == 3
    assert changed.growth_in_window == 700


def test_diamond_needs_a_purchase_within_90_days() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 1, 10, 12), 100)
    # 10,000 growth reached without a purchase in the last 90 days: Gold, not Diamond.
    events = behaviour(state, sh(2026, 4, 20, 10), 9900)
    assert of_type(events, ev.TierChanged)[0].to_tier == "gold"
    # A purchase brings the Diamond.
    events = sale(state, sh(2026, 4, 21, 12), 1)
    [changed] = of_type(events, ev.TierChanged)
    assert (changed.from_tier, changed.to_tier) == ("gold", "diamond")
    assert {e.benefit for e in of_type(events, ev.EntitlementGranted)} == {"family_butler"}


def test_late_sale_counts_by_business_time_and_upgrades_when_recorded() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 3, 1, 12), 1900)
    recorded = sh(2026, 3, 20, 9)
    events = sale(state, sh(2026, 3, 5, 12), 100, now=recorded)
    [changed] = of_type(events, ev.TierChanged)
    assert changed.at == recorded
    assert changed.next_review_at == sh(2027, 3, 20, 9)
    # The tier held at the sale's business time is unchanged: nobody is judged retroactively.
    assert state.earned_tier_at(sh(2026, 3, 10)) == "regular"
    assert state.earned_tier_at(recorded) == "silver"


def test_threshold_change_applies_from_its_effective_time_only() -> None:
    lowered = with_changes(tiers__levels__1__min_growth=1500)
    history = HISTORY.with_version(PolicyVersion(2, sh(2026, 6, 1), lowered))
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 2, 1, 12), 1600, history=history)
    assert state.tier == "regular"
    # Nothing happens when the new thresholds take effect: no event re-judges the member.
    assert of_type(advance(state, sh(2026, 6, 2), history), ev.TierChanged) == []
    assert state.tier == "regular"
    # A late sale recorded after the change, business time before it: judged by the thresholds in force when
    # recorded, so it upgrades now.
    events = sale(state, sh(2026, 5, 30, 12), 1, now=sh(2026, 6, 3, 9), history=history)
    [changed] = of_type(events, ev.TierChanged)
    assert changed.to_tier == "silver" and changed.policy_version == 2 and changed.at == sh(2026, 6, 3, 9)


def test_an_event_before_a_lowered_threshold_takes_effect_does_not_upgrade() -> None:
    lowered = with_changes(tiers__levels__1__min_growth=1500)
    history = HISTORY.with_version(PolicyVersion(2, sh(2026, 6, 1), lowered))
    state = enrolled(sh(2026, 1, 5, 10))
    assert of_type(sale(state, sh(2026, 5, 31, 12), 1600, history=history), ev.TierChanged) == []


# -- reviews ----------------------------------------------------------------------------------------------------


def gold_since(at: datetime) -> MemberState:
    state = enrolled(at - timedelta(days=30))
    sale(state, at, 5000)
    assert state.tier == "gold" and state.next_review_at == at.replace(year=at.year + 1)
    return state


def test_entry_tier_has_no_review() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 1, 6, 10), 100)
    assert tiers.next_due(state, context(sh(2026, 1, 6, 10))) is None


def test_review_keeps_the_tier_when_the_member_still_qualifies() -> None:
    state = gold_since(sh(2026, 3, 1, 12))
    # 10,000 in the window but no purchase in 90 days: still Gold, no upgrade that would move the review.
    assert of_type(behaviour(state, sh(2027, 1, 10, 12), 5000), ev.TierChanged) == []
    events = advance(state, sh(2027, 3, 1, 12))
    [review] = of_type(events, ev.TierReviewed)
    assert review.at == sh(2027, 3, 1, 12)
    assert review.outcome == "kept" and review.qualifying_tier == "gold" and review.growth_in_window == 5000
    assert review.next_review_at == sh(2028, 3, 1, 12)
    assert state.tier == "gold" and state.next_review_at == sh(2028, 3, 1, 12)
    # The perks of the tier ran out on its anniversary; passing the review grants them for another year.
    assert perks(state, sh(2027, 3, 1, 12)) == {"parenting_consultant", "priority_trial"}


def test_review_issues_a_notice_then_downgrades_one_tier_after_30_days() -> None:
    state = gold_since(sh(2026, 3, 1, 12))
    events = advance(state, sh(2027, 3, 1, 12))
    [review] = of_type(events, ev.TierReviewed)
    assert review.outcome == "notice"
    assert review.qualifying_tier == "silver"  # one tier down, though the growth would only keep Regular
    assert review.downgrade_at == sh(2027, 3, 31, 12)
    assert state.tier == "gold" and has_notice(state)
    assert of_type(events, ev.TierChanged) == []

    assert of_type(advance(state, sh(2027, 3, 31, 11, 59)), ev.TierChanged) == []
    events = advance(state, sh(2027, 3, 31, 12))
    [changed] = of_type(events, ev.TierChanged)
    assert (changed.from_tier, changed.to_tier, changed.reason) == ("gold", "silver", "review_downgrade")
    assert changed.next_review_at == sh(2028, 3, 31, 12)
    assert state.tier == "silver" and not has_notice(state)

    # A year later, still nothing: Silver drops to Regular, which has no review.
    advance(state, sh(2028, 3, 31, 12))
    events = advance(state, sh(2028, 4, 30, 12))
    [changed] = of_type(events, ev.TierChanged)
    assert changed.to_tier == "regular" and changed.next_review_at is None
    assert state.next_review_at is None and tiers.next_due(state, context(sh(2028, 5, 1))) is None


def test_downgrade_revokes_the_perks_above_the_new_tier() -> None:
    lasting = with_changes(
        benefits__priority_trial__validity={"kind": "days", "days": 800},
        benefits__parenting_consultant__validity={"kind": "days", "days": 800},
    )
    history = PolicyHistory.starting_with(lasting, datetime(2020, 1, 1, tzinfo=SH))
    state = enrolled(sh(2026, 2, 1, 12))
    sale(state, sh(2026, 3, 1, 12), 5000, history=history)
    trial = next(e for e in state.entitlements.values() if e.benefit == "priority_trial")
    advance(state, sh(2027, 3, 1, 12), history)
    events = advance(state, sh(2027, 3, 31, 12), history)
    assert of_type(events, ev.TierChanged)[0].to_tier == "silver"
    [revoked] = of_type(events, ev.EntitlementRevoked)
    assert revoked.entitlement_id == trial.entitlement_id and revoked.reason == "downgrade"
    assert perks(state, sh(2027, 4, 1)) == {"parenting_consultant"}


def test_notice_cleared_when_the_member_qualifies_again_within_the_grace() -> None:
    state = gold_since(sh(2026, 3, 1, 12))
    advance(state, sh(2027, 3, 1, 12))
    assert has_notice(state)
    # Back to 5000 in the window: no upgrade (already Gold) ...
    assert of_type(sale(state, sh(2027, 3, 10, 12), 5000), ev.TierChanged) == []
    # ... and at the end of the grace the notice is cleared; the next review stays on the anniversary.
    events = advance(state, sh(2027, 3, 31, 12))
    [review] = of_type(events, ev.TierReviewed)
    assert review.outcome == "notice_cleared"
    assert review.next_review_at == sh(2028, 3, 1, 12)
    assert of_type(events, ev.TierChanged) == []
    assert state.tier == "gold" and not has_notice(state) and state.next_review_at == sh(2028, 3, 1, 12)


def test_upgrade_during_the_grace_replaces_the_notice() -> None:
    state = gold_since(sh(2026, 3, 1, 12))
    advance(state, sh(2027, 3, 1, 12))
    events = sale(state, sh(2027, 3, 10, 12), 10000)
    assert of_type(events, ev.TierChanged)[0].to_tier == "diamond"
    assert not has_notice(state) and state.next_review_at == sh(2028, 3, 10, 12)


# -- overrides --------------------------------------------------------------------------------------------------


def override_cmd(tier: str, ends_at: datetime, kind: str = "temporary_upgrade", **kw: str) -> OverrideTier:
    fields = {"reason": "invited 3 friends", "operator_id": "op-7"} | kw
    return OverrideTier(member_id="m1", tier=tier, kind=kind, ends_at=ends_at, **fields)


def test_temporary_upgrade_grants_its_perks_and_ends_by_itself() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 2, 1, 12), 2500)
    assert state.tier == "silver"
    now = sh(2026, 2, 10, 9)
    events = decide(override_cmd("gold", sh(2026, 2, 17, 9)), state, context(now))
    [setting] = of_type(events, ev.TierOverrideSet)
    assert (setting.tier, setting.kind, setting.ends_at) == ("gold", "temporary_upgrade", sh(2026, 2, 17, 9))
    [perk] = of_type(events, ev.EntitlementGranted)
    assert perk.benefit == "priority_trial"
    fold(state, events)
    assert effective_tier(state, POLICY, sh(2026, 2, 12)) == "gold"
    assert state.tier == "silver"
    assert tiers.next_due(state, context(now)) == sh(2026, 2, 17, 9)

    assert of_type(advance(state, sh(2026, 2, 17, 8, 59)), ev.TierOverrideEnded) == []
    events = advance(state, sh(2026, 2, 17, 9))
    [ended] = of_type(events, ev.TierOverrideEnded)
    assert ended.tier == "gold" and ended.at == sh(2026, 2, 17, 9)
    [revoked] = of_type(events, ev.EntitlementRevoked)
    assert revoked.entitlement_id == perk.entitlement_id and revoked.reason == "downgrade"
    assert state.override is None
    assert effective_tier(state, POLICY, sh(2026, 2, 18)) == "silver"
    assert perks(state, sh(2026, 2, 18)) == {"parenting_consultant"}


def test_temporary_upgrade_must_be_above_the_earned_tier() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 2, 1, 12), 2500)
    with pytest.raises(Refusal) as refused:
        decide(override_cmd("silver", sh(2026, 3, 1)), state, context(sh(2026, 2, 10)))
    assert refused.value.reason == "NOT_AN_UPGRADE"
    assert refused.value.metadata == {"tier": "silver", "earned_tier": "silver"}
    # An operator override may set any tier, lower ones included.
    events = decide(override_cmd("regular", sh(2026, 3, 1), kind="override"), state, context(sh(2026, 2, 10)))
    assert of_type(events, ev.TierOverrideSet)[0].kind == "override"
    assert [e.reason for e in of_type(events, ev.EntitlementRevoked)] == ["downgrade"]


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (override_cmd("platinum", sh(2026, 3, 1)), "tier"),
        (override_cmd("gold", sh(2026, 2, 10)), "ends_at"),
        (override_cmd("gold", sh(2026, 3, 1), kind="forever"), "kind"),
        (override_cmd("gold", sh(2026, 3, 1), reason=" "), "reason"),
        (override_cmd("gold", sh(2026, 3, 1), operator_id=""), "operator_id"),
    ],
)
def test_override_validation(command: OverrideTier, field: str) -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    with pytest.raises(InvalidCommand) as invalid:
        decide(command, state, context(sh(2026, 2, 10)))
    assert invalid.value.field == field


def test_decide_does_not_mutate_the_state() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    sale(state, sh(2026, 2, 1, 12), 1999)
    before = state.clone()
    tiers.upgrade(state, context(sh(2026, 2, 2, 12)), growth=10000, purchase_at=sh(2026, 2, 2, 12))
    decide(override_cmd("gold", sh(2026, 3, 1)), state, context(sh(2026, 2, 10)))
    assert state == before


def test_upgrade_grants_the_perks_of_the_new_tier_the_member_no_longer_holds() -> None:
    state = enrolled(sh(2026, 2, 1, 12))
    sale(state, sh(2026, 3, 1, 12), 2000)
    advance(state, sh(2027, 3, 1, 12))
    assert has_notice(state)
    assert perks(state, sh(2027, 3, 1, 12)) == set()  # the Silver perk ran out; no renewal under a notice
    events = sale(state, sh(2027, 3, 10, 12), 5000)
    assert of_type(events, ev.TierChanged)[0].to_tier == "gold"
    assert {e.benefit for e in of_type(events, ev.EntitlementGranted)} == {"parenting_consultant", "priority_trial"}
