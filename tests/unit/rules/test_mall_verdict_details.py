"""The points mall rule's refusals in full: each reason code with its message and its numbers, as a caller sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from policies import judge_exchange, little_sprout
from policies.rules.verdict import Verdict

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
MALL = POLICY.mall
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def judge(
    reward_id: str,
    *,
    tier: str = "regular",
    at: datetime = T0,
    used: int = 0,
    left: int | None = 10,
    points: int = 10_000,
) -> Verdict:
    return judge_exchange(
        POLICY, reward_id, MALL[reward_id], tier=tier, at=at, exchanged_in_period=used, units_left=left,
        available_points=points,
    )  # fmt: skip


def test_outside_the_sale_window_names_the_reward_the_moment_and_both_bounds() -> None:
    at = datetime(2026, 5, 1, tzinfo=SH)
    assert judge("gift_box_618", at=at) == Verdict(
        "OUTSIDE_SALE_WINDOW",
        "618 gift box is not on sale at this time",
        {
            "reward_id": "gift_box_618",
            "at": at,
            "sale_starts_at": datetime(2026, 5, 31, 16, 0, tzinfo=UTC),
            "sale_ends_at": datetime(2026, 6, 18, 16, 0, tzinfo=UTC),
        },
    )


def test_a_window_with_one_bound_reports_only_that_bound() -> None:
    at = datetime(2026, 7, 1, tzinfo=SH)
    ends = datetime(2026, 6, 18, 16, 0, tzinfo=UTC)
    only_end = MALL["gift_box_618"].model_copy(update={"sale_starts_at": None})
    got = judge_exchange(
        POLICY, "gift_box_618", only_end, tier="regular", at=at, exchanged_in_period=0, units_left=10,
        available_points=10_000,
    )  # fmt: skip
    assert got.details == {"reward_id": "gift_box_618", "at": at, "sale_ends_at": ends}
    starts = datetime(2026, 5, 31, 16, 0, tzinfo=UTC)
    only_start = MALL["gift_box_618"].model_copy(update={"sale_ends_at": None})
    early = datetime(2026, 5, 1, tzinfo=SH)
    got = judge_exchange(
        POLICY, "gift_box_618", only_start, tier="regular", at=early, exchanged_in_period=0, units_left=10,
        available_points=10_000,
    )  # fmt: skip
    assert got.details == {"reward_id": "gift_box_618", "at": early, "sale_starts_at": starts}


def test_a_tier_too_low_names_the_reward_the_tier_and_the_tier_needed() -> None:
    assert judge("home_delivery") == Verdict(
        "TIER_NOT_ELIGIBLE",
        "Free home delivery needs tier silver or above; the member is regular",
        {"reward_id": "home_delivery", "tier": "regular", "min_tier": "silver"},
    )


def test_the_limit_reached_names_the_period_the_count_and_the_local_month_end_it_resets_at() -> None:
    assert judge("coupon_20", used=2, left=None) == Verdict(
        "EXCHANGE_LIMIT_REACHED",
        "20 CNY coupon: at most 2 a month per member; 2 exchanged",
        {
            "reward_id": "coupon_20",
            "period": "MONTH",
            "limit": 2,
            "used": 2,
            "resets_at": datetime(2026, 3, 31, 16, 0, tzinfo=UTC),
        },
    )


def test_the_yearly_limit_resets_at_the_local_new_year() -> None:
    got = judge("nursing_pillow", used=1)
    assert got.details["resets_at"] == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert got.message == "Nursing pillow: at most 1 a year per member; 1 exchanged"


def test_out_of_stock_names_the_reward_and_never_reports_negative_stock() -> None:
    assert judge("nursing_pillow", left=-3) == Verdict(
        "OUT_OF_STOCK", "Nursing pillow is out of stock", {"reward_id": "nursing_pillow", "stock_left": 0}
    )


def test_too_few_points_names_the_price_and_the_points_available() -> None:
    assert judge("nursing_pillow", points=2_999) == Verdict(
        "INSUFFICIENT_POINTS",
        "Nursing pillow costs 3000 points, 2999 available",
        {"available": 2_999, "requested": 3_000},
    )
