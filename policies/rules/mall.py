"""The points mall: whether a member may exchange points for a reward now, and the limit's calendar period.

One rule answers both the exchange itself and the catalog a member is shown, so what the catalog says a member
may do is what an exchange then does. Pure: the time, the tier, the stock left and the member's counts are inputs.
"""

from __future__ import annotations

from datetime import datetime

from policies.calendar import local_month_start, month_end_exclusive, year_end_exclusive
from policies.model import Policy, Reward
from policies.rules.tiers import tier_rank
from policies.rules.verdict import Verdict

OUT_OF_STOCK = "OUT_OF_STOCK"
EXCHANGE_LIMIT_REACHED = "EXCHANGE_LIMIT_REACHED"
TIER_NOT_ELIGIBLE = "TIER_NOT_ELIGIBLE"
OUTSIDE_SALE_WINDOW = "OUTSIDE_SALE_WINDOW"
INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"


ExchangeVerdict = Verdict
"""Whether the member may exchange the reward (:class:`~policies.rules.verdict.Verdict`)."""


def limit_period(policy: Policy, reward: Reward, at: datetime) -> tuple[datetime, datetime] | None:
    """The local calendar year or month containing ``at`` that the reward's per-member limit counts in (UTC,
    half-open); None when the reward has no limit."""
    if reward.limit is None:
        return None
    if reward.limit.per == "month":
        return local_month_start(policy, at), month_end_exclusive(policy, at)
    end = year_end_exclusive(policy, at)
    start = year_end_exclusive(policy, at, -1)
    return start, end


def stock_left(reward: Reward, net_taken: int) -> int | None:
    """Units left: the policy's stock less what exchanges took net of cancellations, plus operators' adjustments
    (``net_taken`` = taken - returned - adjusted); None for unlimited stock."""
    if reward.stock is None:
        return None
    return reward.stock - net_taken


def judge_exchange(
    policy: Policy,
    reward_id: str,
    reward: Reward,
    *,
    tier: str,
    at: datetime,
    exchanged_in_period: int,
    units_left: int | None,
    available_points: int,
) -> ExchangeVerdict:
    """Whether a member at ``tier`` holding ``available_points`` may exchange ``reward`` at ``at``, given how many
    they exchanged in the limit's period and the units left. Checked in this order: the sale window, the tier,
    the per-member limit, the stock, the points."""
    if (reward.sale_starts_at is not None and at < reward.sale_starts_at) or (
        reward.sale_ends_at is not None and at >= reward.sale_ends_at
    ):
        window: dict[str, object] = {"reward_id": reward_id, "at": at}
        if reward.sale_starts_at is not None:
            window["sale_starts_at"] = reward.sale_starts_at
        if reward.sale_ends_at is not None:
            window["sale_ends_at"] = reward.sale_ends_at
        return ExchangeVerdict(OUTSIDE_SALE_WINDOW, f"{reward.name} is not on sale at this time", window)
    if reward.min_tier is not None and tier_rank(policy, tier) < tier_rank(policy, reward.min_tier):
        return ExchangeVerdict(
            TIER_NOT_ELIGIBLE,
            f"{reward.name} needs tier {reward.min_tier} or above; the member is {tier}",
            {"reward_id": reward_id, "tier": tier, "min_tier": reward.min_tier},
        )
    period = limit_period(policy, reward, at)
    if reward.limit is not None and period is not None and exchanged_in_period >= reward.limit.count:
        return ExchangeVerdict(
            EXCHANGE_LIMIT_REACHED,
            f"{reward.name}: at most {reward.limit.count} a {reward.limit.per} per member; "
            f"{exchanged_in_period} exchanged",
            {
                "reward_id": reward_id,
                "period": reward.limit.per.upper(),
                "limit": reward.limit.count,
                "used": exchanged_in_period,
                "resets_at": period[1],
            },
        )
    if units_left is not None and units_left <= 0:
        return ExchangeVerdict(
            OUT_OF_STOCK,
            f"{reward.name} is out of stock",
            {"reward_id": reward_id, "stock_left": max(units_left, 0)},
        )
    if available_points < reward.price_points:
        return ExchangeVerdict(
            INSUFFICIENT_POINTS,
            f"{reward.name} costs {reward.price_points} points, {available_points} available",
            {"available": available_points, "requested": reward.price_points},
        )
    return ExchangeVerdict(None)
