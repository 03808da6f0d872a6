"""Policy documents: Little Sprout as its rules give it, round trips, and refusals that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest

from policies import Policy, PolicyInvalid, dump_policy, load_policy, policy_from_data


def invalid_paths(data: Any) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        policy_from_data(data)
    return list(caught.value.paths)


def test_little_sprout_tiers(policy: Policy) -> None:
    levels = policy.tiers.levels
    assert [level.code for level in levels] == ["regular", "silver", "gold", "diamond"]
    assert [level.min_growth for level in levels] == [0, 2000, 5000, 10000]
    assert [level.multiplier for level in levels] == [1, Fraction(6, 5), Fraction(3, 2), 2]
    assert [level.redemption_cap for level in levels] == [Fraction(1, 10), Fraction(3, 20), Fraction(1, 5), Fraction(3, 10)]
    assert levels[1].min_referrals == 3
    assert levels[3].purchase_within_days == 90
    assert (policy.tiers.window_months, policy.tiers.review_months, policy.tiers.grace_days) == (12, 12, 30)


def test_little_sprout_points_rules(policy: Policy) -> None:
    assert policy.timezone == "Asia/Shanghai"
    assert policy.earning.points_per_cny == 1
    assert policy.earning.category_rates == {"infant_formula": Fraction(1, 2)}
    assert policy.earning.sku_bonus_points == {"LS-RICE-CEREAL-01": 20}
    assert (policy.lots.pending_days, policy.lots.expiry.kind, policy.lots.expiry.months) == (7, "end_of_month_after", 12)
    assert policy.redemption.point_value_fen == 1
    assert policy.redemption.hold_ttl_seconds == 900
    assert policy.offline_window_days == 30
    assert policy.refunds.clawback == "arrears"
    multipliers = policy.multipliers
    assert (multipliers.stacking, multipliers.cap) == ("highest", Fraction(3))
    assert multipliers.member_day is not None
    assert (multipliers.member_day.day, multipliers.member_day.factor) == (15, Fraction(2))
    assert multipliers.birthday_month == 2
    sale_618, win_back = multipliers.campaigns
    assert (sale_618.id, sale_618.factor, sale_618.audience) == ("618", Fraction(2), "all")
    assert sale_618.starts_at == datetime(2026, 5, 31, 16, tzinfo=UTC)
    assert sale_618.ends_at == datetime(2026, 6, 18, 16, tzinfo=UTC)
    assert (win_back.audience, win_back.inactive_days, win_back.factor) == ("inactive", 30, Fraction(2))


def test_little_sprout_behaviours_and_membership(policy: Policy) -> None:
    points = {name: (b.points, b.growth, b.cap_group) for name, b in policy.behaviours.items()}
    assert points == {
        "check_in": (1, 1, "check_in"),
        "review": (5, 5, "reviews"),
        "review_with_photos": (10, 10, "reviews"),
        "offline_event": (50, 50, "events"),
        "workshop": (100, 100, "events"),
        "referral": (200, 200, "referrals"),
    }
    assert policy.behaviours["referral"].coupon == "referral_coupon"
    assert policy.behaviours["referral"].counts_as_referral
    caps = {name: (g.per_day, g.per_month) for name, g in policy.cap_groups.items()}
    assert caps == {"check_in": (1, None), "reviews": (3, 20), "events": (1, None), "referrals": (None, 10)}
    plan = policy.memberships["black_gold"]
    assert (plan.price_fen, plan.term_months, plan.multiplier, plan.redemption_cap, plan.cooling_off_days) == (
        19900, 12, Fraction(3, 2), Fraction(1, 5), 7,
    )


def test_little_sprout_benefits(policy: Policy) -> None:
    benefits = policy.benefits
    assert benefits["birthday_coupon"].value_by_tier == {"regular": 5000, "silver": 8000, "gold": 12000, "diamond": 20000}
    assert benefits["member_day_coupon"].validity.kind == "end_of_day"
    assert benefits["referral_coupon"].value_fen == 2000
    assert benefits["black_gold_monthly_coupon"].value_fen == 2000
    assert benefits["free_delivery"].validity.kind == "term"
    assert benefits["free_delivery"].quota_total is None
    consultations = benefits["parenting_consultations"]
    assert (consultations.quota_total, consultations.quota_per_month) == (12, 3)
    assert "membership_cancelled" in consultations.revoke_on
    assert benefits["early_education_sessions"].quota_total == 4
    assert benefits["parenting_consultant"].revoke_on == ("downgrade",)
    assert benefits["birthday_coupon"].validity.days == 365
    schedules = {(g.benefit, g.schedule, g.day_of_month, g.min_tier, g.plan) for g in policy.grants}
    assert ("birthday_coupon", "birthday_month", 1, None, None) in schedules
    assert ("member_day_coupon", "monthly", 15, None, None) in schedules
    assert ("quarterly_coupon", "quarterly", 1, "gold", None) in schedules
    assert ("parenting_consultant", "on_tier", 1, "silver", None) in schedules
    assert ("priority_trial", "on_tier", 1, "gold", None) in schedules
    assert ("family_butler", "on_tier", 1, "diamond", None) in schedules
    assert ("black_gold_monthly_coupon", "membership_monthly", 1, None, "black_gold") in schedules
    assert ("free_delivery", "membership_start", 1, None, "black_gold") in schedules


def test_dump_then_load_gives_the_same_policy(policy: Policy) -> None:
    text = dump_policy(policy)
    assert load_policy(text) == policy
    assert load_policy(dump_policy(load_policy(text))) == policy


def test_a_changed_policy_round_trips_too(document: dict[str, Any]) -> None:
    document["multipliers"]["stacking"] = "multiply"
    document["multipliers"]["cap"] = "7/3"
    document["lots"]["expiry"] = {"kind": "year_end", "years_after": 0}
    changed = policy_from_data(document)
    assert load_policy(dump_policy(changed)) == changed
    assert load_policy(dump_policy(changed)).multipliers.cap == Fraction(7, 3)


def test_json_documents_load(document: dict[str, Any], policy: Policy) -> None:
    assert load_policy(json.dumps(document)) == policy


def test_the_dump_holds_no_floats(policy: Policy) -> None:
    text = dump_policy(policy)
    assert "1.2" in text
    assert "'1.2'" in text  # quoted: YAML must not read it back as a float


def test_an_unknown_cap_group_is_named(document: dict[str, Any]) -> None:
    document["behaviours"]["review"]["cap_group"] = "nope"
    assert invalid_paths(document) == ["behaviours.review.cap_group"]


def test_a_float_ratio_is_named(document: dict[str, Any]) -> None:
    document["multipliers"]["cap"] = 3.0
    document["tiers"]["levels"][1]["multiplier"] = 1.2
    assert sorted(invalid_paths(document)) == ["multipliers.cap", "tiers.levels.1.multiplier"]


def test_an_unknown_field_is_named(document: dict[str, Any]) -> None:
    document["earning"]["points_per_yuan"] = "1"
    assert invalid_paths(document) == ["earning.points_per_yuan"]


def test_a_missing_field_is_named(document: dict[str, Any]) -> None:
    del document["tiers"]["levels"][2]["min_growth"]
    assert invalid_paths(document) == ["tiers.levels.2.min_growth"]


def test_duplicate_and_unordered_tiers_are_named(document: dict[str, Any]) -> None:
    document["tiers"]["levels"][2]["code"] = "silver"
    document["tiers"]["levels"][3]["min_growth"] = 4000
    assert sorted(invalid_paths(document)) == ["tiers.levels.2.code", "tiers.levels.3.min_growth"]


def test_the_entry_tier_needs_no_growth(document: dict[str, Any]) -> None:
    document["tiers"]["levels"][0]["min_growth"] = 1
    assert invalid_paths(document) == ["tiers.levels.0.min_growth"]


def test_an_unknown_time_zone_is_named(document: dict[str, Any]) -> None:
    document["timezone"] = "Mars/Olympus_Mons"
    assert invalid_paths(document) == ["timezone"]


def test_dangling_grant_references_are_named(document: dict[str, Any]) -> None:
    document["grants"][0]["benefit"] = "pony"
    document["grants"][2]["min_tier"] = "platinum"
    document["grants"][6]["plan"] = "white_card"
    assert sorted(invalid_paths(document)) == ["grants.0.benefit", "grants.2.min_tier", "grants.6.plan"]


def test_a_membership_grant_needs_its_plan(document: dict[str, Any]) -> None:
    del document["grants"][7]["plan"]
    assert invalid_paths(document) == ["grants.7.plan"]


def test_a_term_benefit_cannot_be_granted_by_the_calendar(document: dict[str, Any]) -> None:
    document["grants"][1]["benefit"] = "free_delivery"
    assert invalid_paths(document) == ["grants.1.benefit"]


def test_an_unknown_behaviour_coupon_and_tier_value_are_named(document: dict[str, Any]) -> None:
    document["behaviours"]["referral"]["coupon"] = "nope"
    document["benefits"]["birthday_coupon"]["value_by_tier"]["platinum"] = 1
    assert sorted(invalid_paths(document)) == [
        "behaviours.referral.coupon",
        "benefits.birthday_coupon.value_by_tier.platinum",
    ]


def test_campaign_problems_are_named(document: dict[str, Any]) -> None:
    campaign = document["multipliers"]["campaigns"][0]
    campaign["ends_at"] = campaign["starts_at"]
    document["multipliers"]["campaigns"][1]["inactive_days"] = None
    assert sorted(invalid_paths(document)) == [
        "multipliers.campaigns.0.ends_at",
        "multipliers.campaigns.1.inactive_days",
    ]


def test_a_campaign_time_without_zone_is_refused(document: dict[str, Any]) -> None:
    document["multipliers"]["campaigns"][0]["starts_at"] = "2026-06-01T00:00:00"
    assert invalid_paths(document) == ["multipliers.campaigns.0.starts_at"]


def test_a_code_cannot_hold_a_colon(document: dict[str, Any]) -> None:
    document["multipliers"]["campaigns"][0]["id"] = "sale:618"
    assert invalid_paths(document) == ["multipliers.campaigns.0.id"]


def test_the_error_message_names_the_path(document: dict[str, Any]) -> None:
    document["behaviours"]["review"]["cap_group"] = "nope"
    with pytest.raises(PolicyInvalid, match=r"behaviours\.review\.cap_group: unknown cap group 'nope'"):
        policy_from_data(document)


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(PolicyInvalid, match="twice"):
        load_policy("name: A\nname: B\n")
    with pytest.raises(PolicyInvalid, match="twice"):
        load_policy('{"name": "A", "name": "B"}')


@pytest.mark.parametrize("text", ["- a\n- b\n", "just words", "name: [unclosed\n", "{not json"])
def test_a_document_that_is_not_a_mapping_is_refused_at_the_root(text: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(text)
    assert caught.value.paths == ("",)


def test_a_minimal_document_takes_the_defaults() -> None:
    policy = load_policy(
        """
name: Tiny
timezone: Europe/Paris
lots: {expiry: {kind: year_end}}
tiers:
  levels:
    - {code: basic, name: Basic, min_growth: 0, multiplier: "1", redemption_cap: "5%"}
"""
    )
    assert policy.earning.points_per_cny == 1
    assert isinstance(policy.earning.points_per_cny, Fraction)
    assert policy.multipliers.cap == 3
    assert isinstance(policy.multipliers.cap, Fraction)
    assert policy.lots.pending_days == 7
    assert policy.offline_window_days == 30
    assert load_policy(dump_policy(policy)) == policy
