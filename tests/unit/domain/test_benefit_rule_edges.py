"""Benefit edges: which grant rule a perk came from on a downgrade, month bounds of use, renewed tier perks.

A downgrade revokes an entitlement (one that may be revoked on a downgrade) only when the grant rule it came
from asks for more than the new tier: the rule is found from the entitlement's source (``tier:...`` for an
``on_tier`` grant, ``schedule:<schedule>:...`` for a calendar one), and with several rules for one benefit the
lowest of their tiers counts (none at all when one of them has no tier condition).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain.decide import Context, benefits
from ledger.domain.evolve import fold
from ledger.domain.state import Entitlement, MemberState, Use
from policies import Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def policy(*extra_quarterly_tiers: str | None) -> Policy:
    """Little Sprout with its quarterly coupon (a ``quarterly`` grant for gold and up) revoked on a downgrade,
    and more ``quarterly`` rules for the same coupon with the given tiers."""
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["benefits"]["quarterly_coupon"]["revoke_on"] = ["downgrade"]
    for n, tier in enumerate(extra_quarterly_tiers, start=2):
        document["grants"].append(
            {"benefit": "quarterly_coupon", "schedule": "quarterly", "day_of_month": n, "min_tier": tier}
        )
    return policy_from_data(document)


def ctx(p: Policy, now: datetime = T0) -> Context:
    return Context(now=now, at=now, policies=PolicyHistory.starting_with(p, sh(2020, 1, 1)))


def member_holding(source: str, benefit: str = "quarterly_coupon") -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    fold(
        state,
        [
            ev.MemberEnrolled(
                at=sh(2026, 1, 1), member_id="m1", identities=(), tier="regular", policy_version=1
            )
        ],
    )
    state.entitlements["m1/E-1"] = Entitlement(
        entitlement_id="m1/E-1",
        benefit=benefit,
        name="a coupon",
        kind="coupon",
        value_fen=None,
        valid_from=sh(2026, 1, 1),
        valid_until=sh(2027, 1, 1),
        quota_total=1,
        quota_per_month=None,
        source=source,
        revoke_on=("downgrade",),
        granted_at=sh(2026, 1, 1),
    )
    return state


def revoked(state: MemberState, p: Policy, from_tier: str, to_tier: str) -> list[str]:
    out = benefits.on_tier_change(state, from_tier, to_tier, T0, ctx(p))
    assert all(isinstance(e, ev.EntitlementRevoked) and e.reason == "downgrade" for e in out)
    return [e.entitlement_id for e in out if isinstance(e, ev.EntitlementRevoked)]


def test_a_calendar_grant_for_gold_is_revoked_when_the_member_falls_below_gold() -> None:
    state = member_holding("schedule:quarterly:quarterly_coupon:2026-01-01")
    assert revoked(state, policy(), "gold", "silver") == ["m1/E-1"]
    assert revoked(state, policy(), "diamond", "gold") == []


def test_the_schedule_is_the_second_part_of_the_source_however_many_parts_follow() -> None:
    assert revoked(member_holding("schedule:quarterly"), policy(), "gold", "silver") == ["m1/E-1"]


def test_a_source_naming_no_schedule_has_no_tier_condition() -> None:
    assert revoked(member_holding("schedule"), policy(), "gold", "silver") == []


def test_a_source_of_another_kind_is_never_read_as_a_schedule() -> None:
    # an exchange whose id happens to be a schedule's name: the mall gave it, no tier rule applies
    assert revoked(member_holding("exchange:quarterly"), policy(), "gold", "silver") == []
    assert revoked(member_holding("membership:quarterly:quarterly_coupon"), policy(), "gold", "silver") == []


def test_a_benefit_also_granted_without_a_tier_condition_is_never_revoked_on_a_downgrade() -> None:
    state = member_holding("schedule:quarterly:quarterly_coupon:2026-01-02")
    assert revoked(state, policy(None), "gold", "regular") == []


def test_with_several_tier_rules_the_lowest_tier_by_rank_counts() -> None:
    # gold comes before silver in the alphabet, silver before gold in the ladder
    state = member_holding("schedule:quarterly:quarterly_coupon:2026-01-02")
    p = policy("silver")
    assert revoked(state, p, "diamond", "silver") == []
    assert revoked(state, p, "diamond", "regular") == ["m1/E-1"]


def test_an_on_tier_perk_is_revoked_below_the_tier_of_its_rule() -> None:
    state = member_holding("tier:gold:priority_trial", benefit="priority_trial")
    assert revoked(state, little_sprout(), "gold", "silver") == ["m1/E-1"]
    assert revoked(state, little_sprout(), "diamond", "gold") == []


# -- monthly use ----------------------------------------------------------------------------------------------


def used(*uses: datetime) -> Entitlement:
    ent = member_holding("schedule:quarterly:quarterly_coupon:2026-01-01").entitlements["m1/E-1"]
    ent.uses = [Use(at=at, quantity=1, order_id=f"O-{n}", store_id="S-1") for n, at in enumerate(uses)]
    return ent


def test_a_use_at_the_first_instant_of_a_local_month_counts_in_that_month_only() -> None:
    ent = used(sh(2026, 4, 1))
    p = little_sprout()
    assert benefits.used_in_month(ent, p, sh(2026, 4, 20)) == 1
    assert benefits.used_in_month(ent, p, sh(2026, 4, 1)) == 1
    assert benefits.used_in_month(ent, p, sh(2026, 3, 31, 23, 59)) == 0
    assert (
        benefits.used_in_month(ent, p, sh(2026, 3, 31, 23, 59) + timedelta(seconds=59, microseconds=999999))
        == 0
    )


# -- renewed tier perks --------------------------------------------------------------------------------------


def test_renewed_tier_perks_are_numbered_from_the_first_unless_told_otherwise() -> None:
    state = MemberState(program_id="ls", member_id="m1")
    fold(
        state,
        [
            ev.MemberEnrolled(
                at=sh(2026, 1, 1), member_id="m1", identities=(), tier="regular", policy_version=1
            )
        ],
    )
    p = little_sprout()
    default = benefits.renew_tier_perks(state, "gold", T0, ctx(p))
    assert default == benefits.renew_tier_perks(state, "gold", T0, ctx(p), n0=0)
    assert default != benefits.renew_tier_perks(state, "gold", T0, ctx(p), n0=1)
    assert [e.benefit for e in default if isinstance(e, ev.EntitlementGranted)] == [
        "parenting_consultant",
        "priority_trial",
    ]


# -- what is left of a quota ----------------------------------------------------------------------------------


def test_what_is_left_of_a_total_quota_never_goes_below_zero() -> None:
    ent = used(sh(2026, 2, 1))
    ent.quota_total = 4
    assert benefits.remaining(ent) == 3
    ent.uses += used(sh(2026, 2, 2), sh(2026, 2, 3), sh(2026, 2, 4)).uses
    assert benefits.remaining(ent) == 0
    ent.uses += used(sh(2026, 2, 5)).uses
    assert benefits.remaining(ent) == 0
    ent.quota_total = None
    assert benefits.remaining(ent) is None


def test_no_term_end_when_no_term_covers_the_moment() -> None:
    state = member_holding("schedule:quarterly:quarterly_coupon:2026-01-01")
    assert benefits._plan_term_end(state, "black_gold", T0) is None
    assert benefits._plan_term_end(state, None, T0) is None
