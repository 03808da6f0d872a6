"""Benefit grants: when they fall, until when they can be used, and their value."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies import (
    Policy,
    UnknownBenefit,
    benefit,
    benefit_valid_until,
    benefit_value_fen,
    grant_moments,
    membership_grant_moments,
    policy_from_data,
    tier_grants,
)


def test_calendar_grants_in_a_quarter(policy: Policy, sh) -> None:
    moments = [(t, rule.benefit) for t, rule in grant_moments(policy, sh(2026, 3, 15), sh(2026, 5, 15))]
    assert moments == [
        (sh(2026, 4, 1), "birthday_coupon"),
        (sh(2026, 4, 1), "quarterly_coupon"),
        (sh(2026, 4, 15), "member_day_coupon"),
        (sh(2026, 5, 1), "birthday_coupon"),
        (sh(2026, 5, 15), "member_day_coupon"),
    ]


def test_the_interval_excludes_after_and_includes_upto(policy: Policy, sh) -> None:
    tick = timedelta(microseconds=1)
    assert grant_moments(policy, sh(2026, 4, 15), sh(2026, 4, 16)) == []
    (moment, rule) = grant_moments(policy, sh(2026, 4, 15) - tick, sh(2026, 4, 15))[0]
    assert (moment, rule.benefit) == (sh(2026, 4, 15), "member_day_coupon")
    assert grant_moments(policy, sh(2026, 4, 16), sh(2026, 4, 15)) == []


def test_quarterly_grants_fall_on_the_first_day_of_each_quarter(policy: Policy, sh) -> None:
    quarterly = [t for t, rule in grant_moments(policy, sh(2026, 1, 1), sh(2027, 1, 1)) if rule.schedule == "quarterly"]
    assert quarterly == [sh(2026, 4, 1), sh(2026, 7, 1), sh(2026, 10, 1), sh(2027, 1, 1)]


def test_member_day_coupon_is_valid_to_the_end_of_that_day(policy: Policy, sh) -> None:
    assert benefit_valid_until(policy, "member_day_coupon", sh(2026, 4, 15), None) == sh(2026, 4, 16)
    assert benefit_valid_until(policy, "member_day_coupon", sh(2026, 4, 15, 10, 30), None) == sh(2026, 4, 16)


def test_benefits_last_a_year_unless_said_otherwise(policy: Policy, sh) -> None:
    assert benefit_valid_until(policy, "birthday_coupon", sh(2026, 4, 1), None) == sh(2026, 4, 1) + timedelta(days=365)


def test_term_benefits_end_with_the_term(policy: Policy, sh) -> None:
    assert benefit_valid_until(policy, "free_delivery", sh(2026, 3, 10), sh(2027, 3, 10)) == sh(2027, 3, 10)
    with pytest.raises(ValueError):
        benefit_valid_until(policy, "free_delivery", sh(2026, 3, 10), None)


def test_a_term_benefit_asked_without_the_terms_end_is_refused_with_its_code(policy: Policy, sh) -> None:
    with pytest.raises(ValueError, match="benefit 'free_delivery' is valid for a membership term"):
        benefit_valid_until(policy, "free_delivery", sh(2026, 3, 10), None)


def test_an_unknown_benefit_is_refused_with_its_code(policy: Policy) -> None:
    with pytest.raises(UnknownBenefit) as refused:
        benefit(policy, "pony")
    assert refused.value.code == "pony"
    assert str(refused.value) == "unknown benefit 'pony'"


def test_end_of_month_validity(document: dict[str, Any], sh) -> None:
    document["benefits"]["member_day_coupon"]["validity"] = {"kind": "end_of_month"}
    changed = policy_from_data(document)
    assert benefit_valid_until(changed, "member_day_coupon", sh(2026, 4, 15), None) == sh(2026, 5, 1)


def test_benefit_values(policy: Policy) -> None:
    assert [benefit_value_fen(policy, "birthday_coupon", t) for t in ("regular", "silver", "gold", "diamond")] == [
        5000, 8000, 12000, 20000,
    ]
    assert benefit_value_fen(policy, "referral_coupon", "gold") == 2000
    assert benefit_value_fen(policy, "black_gold_monthly_coupon", "regular") == 2000
    assert benefit_value_fen(policy, "parenting_consultant", "gold") is None
    with pytest.raises(UnknownBenefit):
        benefit_value_fen(policy, "pony", "gold")


def test_black_gold_monthly_coupons_over_a_term(policy: Policy, sh) -> None:
    start, end = sh(2026, 3, 10, 14), sh(2027, 3, 10, 14)
    moments = membership_grant_moments(policy, "black_gold", start, end, start, end)
    assert [t for t, _ in moments] == [sh(2026, m, 1) for m in range(4, 13)] + [sh(2027, m, 1) for m in range(1, 4)]
    assert {rule.benefit for _, rule in moments} == {"black_gold_monthly_coupon"}
    on_the_first = membership_grant_moments(policy, "black_gold", sh(2026, 3, 1), sh(2027, 3, 1), sh(2026, 2, 1), sh(2028, 1, 1))
    assert next(t for t, _ in on_the_first) == sh(2026, 3, 1)
    assert len(on_the_first) == 12
    partial = membership_grant_moments(policy, "black_gold", start, end, sh(2026, 5, 1), sh(2026, 6, 1))
    assert [t for t, _ in partial] == [sh(2026, 6, 1)]


def test_tier_grants_up_to_the_tier(policy: Policy) -> None:
    assert [rule.benefit for rule in tier_grants(policy, "regular")] == []
    assert [rule.benefit for rule in tier_grants(policy, "gold")] == ["parenting_consultant", "priority_trial"]
    assert [rule.benefit for rule in tier_grants(policy, "diamond")] == ["parenting_consultant", "priority_trial", "family_butler"]


def test_a_monthly_rule_listed_after_a_quarterly_one_grants_every_month(document: dict[str, Any], sh) -> None:
    document["grants"].append({"benefit": "referral_coupon", "schedule": "monthly", "day_of_month": 5})
    changed = policy_from_data(document)
    moments = [(t, rule.benefit) for t, rule in grant_moments(changed, sh(2026, 2, 1), sh(2026, 2, 28))]
    assert moments == [(sh(2026, 2, 5), "referral_coupon"), (sh(2026, 2, 15), "member_day_coupon")]


def test_a_cards_monthly_grants_fall_in_time_then_in_rule_order(document: dict[str, Any], sh) -> None:
    """A rule listed first but falling later in the month comes after; two on one day keep the rules' order."""
    card = {"schedule": "membership_monthly", "plan": "black_gold"}
    document["grants"].insert(0, {"benefit": "member_day_coupon", "day_of_month": 20, **card})
    document["grants"].append({"benefit": "referral_coupon", "day_of_month": 1, **card})
    changed = policy_from_data(document)
    start, end = sh(2026, 3, 10, 14), sh(2027, 3, 10, 14)
    moments = membership_grant_moments(changed, "black_gold", start, end, sh(2026, 3, 31), sh(2026, 5, 1))
    assert [(t, rule.benefit) for t, rule in moments] == [
        (sh(2026, 4, 1), "black_gold_monthly_coupon"),
        (sh(2026, 4, 1), "referral_coupon"),
        (sh(2026, 4, 20), "member_day_coupon"),
        (sh(2026, 5, 1), "black_gold_monthly_coupon"),
        (sh(2026, 5, 1), "referral_coupon"),
    ]


def test_a_term_starting_at_a_grant_moment_gets_it_at_its_first_instant(policy: Policy, sh) -> None:
    """The due work at the term's first instant asks for ``(start - 1us, start]``: that moment is the grant's."""
    start = sh(2027, 3, 1)
    moments = membership_grant_moments(
        policy, "black_gold", start, sh(2028, 3, 1), start - timedelta(microseconds=1), start
    )
    assert [(t, rule.benefit) for t, rule in moments] == [(start, "black_gold_monthly_coupon")]


def test_grant_moments_are_counted_on_the_programs_calendar_not_the_machines(
    document: dict[str, Any], far_ahead_host_clock: None
) -> None:
    """At 23:30 on 27 February in a program at UTC-12 it is already 1 March on a machine at UTC+14: the grants
    on the 28th of February still fall."""
    document["timezone"] = "Etc/GMT+12"
    document["grants"].append({"benefit": "referral_coupon", "schedule": "monthly", "day_of_month": 28})
    card_rule = {"schedule": "membership_monthly", "day_of_month": 28, "plan": "black_gold"}
    document["grants"].append({"benefit": "member_day_coupon", **card_rule})
    changed = policy_from_data(document)
    zone = ZoneInfo("Etc/GMT+12")
    late, then = datetime(2026, 2, 27, 23, 30, tzinfo=zone), datetime(2026, 2, 28, 12, tzinfo=zone)
    feb_28 = datetime(2026, 2, 28, tzinfo=zone)
    assert [(t, r.benefit) for t, r in grant_moments(changed, late, then)] == [(feb_28, "referral_coupon")]
    card = membership_grant_moments(
        changed, "black_gold", late, late + timedelta(days=365), late - timedelta(days=9), then
    )
    assert [(t, r.benefit) for t, r in card] == [(feb_28, "member_day_coupon")]
