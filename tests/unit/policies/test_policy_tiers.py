"""Tiers: what qualifies, what is missing for the next one, and the growth window."""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction

import pytest

from policies import (
    Policy,
    TierGap,
    UnknownTier,
    downgrade_due,
    qualifying_tier,
    review_due,
    tier_below,
    tier_codes,
    tier_gap,
    tier_multiplier,
    tier_rank,
    tier_redemption_cap,
    window_start,
)


@pytest.fixture
def now(sh) -> datetime:
    result: datetime = sh(2026, 9, 1, 12)
    return result


@pytest.mark.parametrize(
    ("growth", "referrals", "tier"),
    [(0, 0, "regular"), (1999, 2, "regular"), (2000, 0, "silver"), (0, 3, "silver"), (4999, 30, "silver"),
     (5000, 0, "gold"), (9999, 0, "gold")],
)
def test_qualifying_by_growth_or_referrals(policy: Policy, now: datetime, growth: int, referrals: int, tier: str) -> None:
    assert qualifying_tier(policy, growth, referrals, now - timedelta(days=1), now) == tier


def test_diamond_needs_a_purchase_in_the_last_90_days(policy: Policy, now: datetime) -> None:
    day = timedelta(days=1)
    assert qualifying_tier(policy, 10000, 0, now - 89 * day, now) == "diamond"
    assert qualifying_tier(policy, 10000, 0, now - 90 * day + timedelta(seconds=1), now) == "diamond"
    assert qualifying_tier(policy, 10000, 0, now - 90 * day, now) == "gold"
    assert qualifying_tier(policy, 10000, 0, now - 91 * day, now) == "gold"
    assert qualifying_tier(policy, 10000, 0, None, now) == "gold"
    assert qualifying_tier(policy, 10000, 0, now, now) == "diamond"
    assert qualifying_tier(policy, 10000, 0, now + timedelta(seconds=1), now) == "gold"


def test_the_gap_to_the_next_tier(policy: Policy, now: datetime) -> None:
    assert tier_gap(policy, "regular", 1500, 1, None, now) == TierGap("silver", 500, 2, False)
    assert tier_gap(policy, "silver", 6000, 0, None, now) == TierGap("gold", 0, None, False)
    assert tier_gap(policy, "gold", 8000, 0, None, now) == TierGap("diamond", 2000, None, True)
    assert tier_gap(policy, "gold", 8000, 0, now - timedelta(days=10), now) == TierGap("diamond", 2000, None, False)
    assert tier_gap(policy, "diamond", 0, 0, None, now) == TierGap(None, 0, None, False)


def test_tier_lookups(policy: Policy) -> None:
    assert tier_codes(policy) == ("regular", "silver", "gold", "diamond")
    assert [tier_rank(policy, code) for code in tier_codes(policy)] == [0, 1, 2, 3]
    assert tier_multiplier(policy, "silver") == Fraction(6, 5)
    assert tier_redemption_cap(policy, "diamond") == Fraction(3, 10)
    assert tier_below(policy, "gold") == "silver"
    assert tier_below(policy, "regular") == "regular"
    with pytest.raises(UnknownTier):
        tier_rank(policy, "platinum")


def test_the_growth_window_is_twelve_local_months(policy: Policy, sh) -> None:
    assert window_start(policy, sh(2026, 3, 31, 23, 30)) == sh(2025, 3, 31, 23, 30)
    assert window_start(policy, sh(2028, 2, 29, 10)) == sh(2027, 2, 28, 10)
    assert window_start(policy, sh(2026, 3, 1, 0, 30)) == sh(2025, 3, 1, 0, 30)  # 2026-02-28T16:30Z


def test_review_and_downgrade_dates(policy: Policy, sh) -> None:
    assert review_due(policy, sh(2026, 2, 10, 9)) == sh(2027, 2, 10, 9)
    assert downgrade_due(policy, sh(2027, 2, 10, 9)) == sh(2027, 3, 12, 9)


def test_a_member_with_less_than_no_growth_in_the_window_is_still_at_the_entry_tier(
    policy: Policy, now: datetime
) -> None:
    assert qualifying_tier(policy, -100, 0, now - timedelta(days=1), now) == "regular"


def test_an_unknown_tier_is_refused_naming_the_code(policy: Policy) -> None:
    with pytest.raises(UnknownTier, match=r"^unknown tier 'platinum'$") as by_rank:
        tier_rank(policy, "platinum")
    assert by_rank.value.code == "platinum"
    with pytest.raises(UnknownTier, match=r"^unknown tier 'platinum'$") as by_level:
        tier_multiplier(policy, "platinum")
    assert by_level.value.code == "platinum"


def test_a_window_ending_early_on_a_local_29_february_starts_on_the_local_28_february(
    policy: Policy, sh
) -> None:
    # 05:00 on 29 February in Shanghai is still 28 February in UTC: the months are counted on the local calendar.
    assert window_start(policy, sh(2028, 2, 29, 5)) == sh(2027, 2, 28, 5)
