"""How many points may pay for an order, and what points are worth."""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

from policies.model import Policy
from policies.rules.memberships import membership_plan
from policies.rules.tiers import tier_redemption_cap


def redemption_share(policy: Policy, tier: str, active_plans: Iterable[str]) -> Fraction:
    """The share of an order points may pay: the best of the tier's and every active plan's."""
    shares = [tier_redemption_cap(policy, tier)]
    shares.extend(membership_plan(policy, plan).redemption_cap for plan in active_plans)
    return max(shares)


def redemption_cap_points(policy: Policy, tier: str, active_plans: Iterable[str], order_total_fen: int) -> int:
    """The most points that may pay for an order of ``order_total_fen``:
    ``floor(order_total_fen * share) // point_value_fen``."""
    if order_total_fen < 0:
        raise ValueError(f"an order total cannot be negative, got {order_total_fen}")
    fen = math.floor(order_total_fen * redemption_share(policy, tier, active_plans))
    return fen // policy.redemption.point_value_fen


def points_value_fen(policy: Policy, points: int) -> int:
    """What ``points`` pay, in fen."""
    return points * policy.redemption.point_value_fen
