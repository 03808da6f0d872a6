"""Edges of the pure rules that a broken rule gets wrong: zero and negative totals, the entry tier, the
referral route's gap, Shanghai month boundaries, exclusive window ends, ties between multipliers, caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from policies import (
    EarningContext,
    OrderLine,
    Policy,
    activation_time,
    campaign_applies,
    combine_multipliers,
    earn_order,
    entry_tier,
    lot_expiry,
    policy_from_data,
    qualifying_tier,
    redeemed_return,
    redemption_cap_points,
    refund_takeback,
    relot_expiry,
    tier_gap,
)


def toys(paid_fen: int, line_id: str = "l1") -> OrderLine:
    return OrderLine(line_id=line_id, sku="SKU-1", category="toys", quantity=1, paid_fen=paid_fen)


def test_a_zero_order_total_has_a_zero_cap_and_a_negative_one_is_refused(policy: Policy) -> None:
    assert redemption_cap_points(policy, "diamond", ("black_gold",), 0) == 0
    assert redemption_cap_points(policy, "regular", (), 9) == 0  # floor(0.9 fen)
    assert redemption_cap_points(policy, "regular", (), 10) == 1
    with pytest.raises(ValueError, match="cannot be negative, got -1"):
        redemption_cap_points(policy, "regular", (), -1)


def test_the_black_gold_card_caps_at_the_better_of_its_tier_and_twenty_percent(policy: Policy) -> None:
    assert redemption_cap_points(policy, "silver", ("black_gold",), 12345) == 2469  # floor(12345 * 20%)
    assert redemption_cap_points(policy, "diamond", ("black_gold",), 12345) == 3703  # floor(12345 * 30%)


def test_the_entry_tier_is_the_first_level(policy: Policy) -> None:
    assert entry_tier(policy) == "regular"


def test_the_gap_by_referrals_is_zero_once_there_are_enough(policy: Policy, sh: Any) -> None:
    at = sh(2026, 3, 10)
    gap = tier_gap(policy, "regular", 0, 3, None, at)
    assert (gap.next_tier, gap.growth_missing, gap.referrals_missing, gap.needs_purchase) == ("silver", 2000, 0, False)
    assert tier_gap(policy, "regular", 1999, 5, None, at).referrals_missing == 0
    assert tier_gap(policy, "regular", 0, 1, None, at).referrals_missing == 2
    assert tier_gap(policy, "silver", 0, 9, None, at).referrals_missing is None


def test_diamond_wants_a_purchase_within_the_last_ninety_days_exactly(policy: Policy, sh: Any) -> None:
    at = sh(2026, 6, 1, 12)
    assert qualifying_tier(policy, 10000, 0, at - timedelta(days=90) + timedelta(microseconds=1), at) == "diamond"
    assert qualifying_tier(policy, 10000, 0, at - timedelta(days=90), at) == "gold"
    assert qualifying_tier(policy, 10000, 0, at + timedelta(microseconds=1), at) == "gold"
    assert qualifying_tier(policy, 9999, 0, at, at) == "gold"
    assert qualifying_tier(policy, 4999, 3, None, at) == "silver"
    assert qualifying_tier(policy, 1999, 2, None, at) == "regular"


def test_lot_expiry_follows_the_shanghai_month_not_the_utc_month(policy: Policy, sh: Any) -> None:
    # 1 March 00:30 in Shanghai is still 28 February in UTC: the lot belongs to March
    assert lot_expiry(policy, sh(2026, 3, 1, 0, 30)) == sh(2027, 4, 1)
    assert lot_expiry(policy, sh(2026, 2, 28, 23, 59)) == sh(2027, 3, 1)
    # the reference example: active 2026-03-10, expires at the end of 2027-03-31
    assert lot_expiry(policy, sh(2026, 3, 10)) == sh(2027, 4, 1)
    assert lot_expiry(policy, sh(2026, 12, 31, 23, 59)).astimezone(UTC) == datetime(2027, 12, 31, 16, tzinfo=UTC)


def test_year_end_clearing_expires_at_the_end_of_the_local_year(policy: Policy, sh: Any) -> None:
    document = policy.model_dump(mode="json")
    document["lots"]["expiry"] = {"kind": "year_end", "years_after": 1}
    clearing = policy_from_data(document)
    assert lot_expiry(clearing, sh(2026, 12, 31, 23, 59)) == sh(2028, 1, 1)
    assert lot_expiry(clearing, sh(2027, 1, 1, 0, 1)) == sh(2029, 1, 1)


def test_activation_is_seven_days_later_and_a_relot_thirty_days_after_the_refund(policy: Policy, sh: Any) -> None:
    assert activation_time(policy, sh(2026, 3, 10, 23, 59)) == sh(2026, 3, 17, 23, 59)
    assert relot_expiry(policy, sh(2026, 3, 10, 12)) == sh(2026, 4, 9, 12)


def test_a_campaign_window_includes_its_start_and_excludes_its_end(policy: Policy, sh: Any) -> None:
    [c618] = [c for c in policy.multipliers.campaigns if c.id == "618"]
    active = sh(2026, 5, 1)

    def ctx(at: datetime) -> EarningContext:
        return EarningContext(occurred_at=at, tier="regular", last_activity_at=active)

    assert campaign_applies(c618, ctx(sh(2026, 6, 1)))
    assert campaign_applies(c618, ctx(sh(2026, 6, 18, 23, 59)))
    assert not campaign_applies(c618, ctx(sh(2026, 6, 19)))
    assert not campaign_applies(c618, ctx(sh(2026, 5, 31, 23, 59)))


def test_win_back_needs_thirty_full_days_of_inactivity(policy: Policy, sh: Any) -> None:
    [win_back] = [c for c in policy.multipliers.campaigns if c.id == "win_back"]
    at = sh(2026, 3, 10, 12)
    last = EarningContext(occurred_at=at, tier="regular", last_activity_at=at - timedelta(days=30))
    assert campaign_applies(win_back, last)
    recent = EarningContext(occurred_at=at, tier="regular", last_activity_at=at - timedelta(days=30) + timedelta(seconds=1))
    assert not campaign_applies(win_back, recent)
    assert campaign_applies(win_back, EarningContext(occurred_at=at, tier="regular"))


def test_highest_wins_keeps_the_first_of_equal_candidates_and_the_cap_is_three(policy: Policy) -> None:
    two = Fraction(2)
    assert combine_multipliers(policy, [("tier:regular", Fraction(1)), ("member_day", two), ("birthday_month", two)]) == (
        two, "member_day",
    )
    assert combine_multipliers(policy, []) == (Fraction(1), "none")
    assert combine_multipliers(policy, [("campaign:x", Fraction(4))]) == (Fraction(3), "cap")
    assert combine_multipliers(policy, [("campaign:x", Fraction(3))]) == (Fraction(3), "campaign:x")


def test_multiply_stacking_is_capped_at_three(policy: Policy) -> None:
    document = policy.model_dump(mode="json")
    document["multipliers"]["stacking"] = "multiply"
    multiply = policy_from_data(document)
    candidates = [("tier:gold", Fraction(3, 2)), ("plan:black_gold", Fraction(3, 2))]
    assert combine_multipliers(multiply, candidates) == (Fraction(9, 4), "multiply:tier:gold*plan:black_gold")
    more = [*candidates, ("member_day", Fraction(2))]
    assert combine_multipliers(multiply, more) == (Fraction(3), "cap")


def test_each_line_is_rounded_down_separately(policy: Policy, sh: Any) -> None:
    at = sh(2026, 3, 16, 10)
    result = earn_order(policy, [toys(199, "a"), toys(199, "b")], EarningContext(at, "silver", last_activity_at=at))
    # floor(199 * 1.2 / 100) = floor(2.388) = 2 per line
    assert [line.points for line in result.lines] == [2, 2]
    split = earn_order(policy, [toys(150, "a"), toys(150, "b")], EarningContext(at, "silver", last_activity_at=at))
    # floor(1.8) + floor(1.8) = 2, not floor(3.6) = 3; growth is the order's floor(300 / 100) = 3
    assert (split.points, split.growth) == (2, 3)


def test_take_back_rounds_up_and_returned_points_round_down(policy: Policy) -> None:
    assert refund_takeback(100, 1, 10001, 0) == 1  # ceil(0.0099)
    assert refund_takeback(100, 0, 10001, 0) == 0
    assert refund_takeback(100, 10001, 10001, 99) == 1
    assert refund_takeback(7, 0, 0, 0) == 0  # a line that paid nothing gives nothing back
    assert redeemed_return(120, 9999, 10000, 0) == 119  # floor(119.988)
    assert redeemed_return(120, 10000, 10000, 119) == 1
    assert redeemed_return(7, 0, 0, 0) == 7  # an order paid with no money is refunded whole
    with pytest.raises(ValueError, match="more than the 1 due"):
        refund_takeback(100, 1, 10001, 2)
    with pytest.raises(ValueError, match="more than the 119 due"):
        redeemed_return(120, 9999, 10000, 120)
    with pytest.raises(ValueError):
        refund_takeback(100, 10002, 10001, 0)
