"""How much of an order points may pay."""

from __future__ import annotations

from typing import Any

import pytest

from policies import Policy, UnknownTier, points_value_fen, policy_from_data, redemption_cap_points


@pytest.mark.parametrize(
    ("tier", "points"), [("regular", 1000), ("silver", 1500), ("gold", 2000), ("diamond", 3000)]
)
def test_the_cap_by_tier(policy: Policy, tier: str, points: int) -> None:
    assert redemption_cap_points(policy, tier, (), 10000) == points


@pytest.mark.parametrize(("tier", "points"), [("regular", 1), ("silver", 2), ("gold", 3), ("diamond", 5)])
def test_the_cap_rounds_down(policy: Policy, tier: str, points: int) -> None:
    assert redemption_cap_points(policy, tier, (), 19) == points  # 1.9, 2.85, 3.8, 5.7


def test_the_black_gold_card_gives_the_better_share(policy: Policy) -> None:
    assert redemption_cap_points(policy, "regular", ("black_gold",), 10000) == 2000
    assert redemption_cap_points(policy, "silver", ("black_gold",), 10000) == 2000
    assert redemption_cap_points(policy, "diamond", ("black_gold",), 10000) == 3000


def test_points_worth_more_than_a_fen(document: dict[str, Any], policy: Policy) -> None:
    document["redemption"]["point_value_fen"] = 3
    dearer = policy_from_data(document)
    assert redemption_cap_points(dearer, "regular", (), 10000) == 333
    assert points_value_fen(dearer, 333) == 999
    assert points_value_fen(policy, 1234) == 1234


def test_refusals(policy: Policy) -> None:
    with pytest.raises(UnknownTier):
        redemption_cap_points(policy, "platinum", (), 100)
    with pytest.raises(ValueError):
        redemption_cap_points(policy, "regular", (), -1)
