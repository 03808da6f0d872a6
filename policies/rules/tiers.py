"""Tier levels: their order, what qualifies for them, and what a member still lacks for the next one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from policies.calendar import add_local_months, in_utc, require_aware
from policies.errors import UnknownTier
from policies.model import Policy, TierLevel


@dataclass(frozen=True, slots=True)
class TierGap:
    """What the member lacks for ``next_tier`` (None: already at the top tier). ``growth_missing`` is 0 when
    the growth is there; ``referrals_missing`` is None when the next tier cannot qualify by referrals; either
    route is enough. ``needs_purchase`` when the next tier wants a recent purchase the member has not made."""

    next_tier: str | None
    growth_missing: int
    referrals_missing: int | None
    needs_purchase: bool


def tier_codes(policy: Policy) -> tuple[str, ...]:
    """The tier codes from the entry tier up."""
    return tuple(level.code for level in policy.tiers.levels)


def tier_level(policy: Policy, code: str) -> TierLevel:
    """The tier ``code``; raises ``UnknownTier``."""
    for level in policy.tiers.levels:
        if level.code == code:
            return level
    raise UnknownTier(code)


def tier_rank(policy: Policy, code: str) -> int:
    """The tier's position: 0 for the entry tier, higher is better; raises ``UnknownTier``."""
    for rank, level in enumerate(policy.tiers.levels):
        if level.code == code:
            return rank
    raise UnknownTier(code)


def entry_tier(policy: Policy) -> str:
    """The tier every member starts in."""
    return policy.tiers.levels[0].code


def tier_below(policy: Policy, code: str) -> str:
    """The tier one step below ``code`` (the entry tier stays where it is)."""
    return policy.tiers.levels[max(tier_rank(policy, code) - 1, 0)].code


def tier_multiplier(policy: Policy, code: str) -> Fraction:
    """The earning multiplier of tier ``code``."""
    return tier_level(policy, code).multiplier


def tier_redemption_cap(policy: Policy, code: str) -> Fraction:
    """The share of an order that points may pay at tier ``code``."""
    return tier_level(policy, code).redemption_cap


def window_start(policy: Policy, at: datetime) -> datetime:
    """The start of the growth window ending at ``at``: ``window_months`` calendar months earlier, local."""
    return add_local_months(policy, at, -policy.tiers.window_months)


def review_due(policy: Policy, last_change_at: datetime) -> datetime:
    """When a tier reached at ``last_change_at`` is reviewed: ``review_months`` later (its anniversary)."""
    return add_local_months(policy, last_change_at, policy.tiers.review_months)


def downgrade_due(policy: Policy, notice_at: datetime) -> datetime:
    """When a downgrade announced at ``notice_at`` takes effect if the member still does not qualify."""
    return in_utc(notice_at) + timedelta(days=policy.tiers.grace_days)


def purchased_recently(level: TierLevel, last_purchase_at: datetime | None, at: datetime) -> bool:
    """Whether ``level``'s recent-purchase requirement (if any) holds: a purchase in ``(at - days, at]``."""
    if level.purchase_within_days is None:
        return True
    if last_purchase_at is None:
        return False
    return at - timedelta(days=level.purchase_within_days) < require_aware(last_purchase_at) <= at


def qualifies(
    level: TierLevel, growth_in_window: int, referrals_in_window: int, last_purchase_at: datetime | None, at: datetime
) -> bool:
    """Whether a member with these figures qualifies for ``level`` at ``at``."""
    by_growth = growth_in_window >= level.min_growth
    by_referrals = level.min_referrals is not None and referrals_in_window >= level.min_referrals
    return (by_growth or by_referrals) and purchased_recently(level, last_purchase_at, at)


def qualifying_tier(
    policy: Policy,
    growth_in_window: int,
    referrals_in_window: int,
    last_purchase_at: datetime | None,
    at: datetime,
) -> str:
    """The highest tier the member qualifies for at ``at`` (the entry tier at least)."""
    require_aware(at)
    for level in reversed(policy.tiers.levels):
        if qualifies(level, growth_in_window, referrals_in_window, last_purchase_at, at):
            return level.code
    return entry_tier(policy)


def tier_gap(
    policy: Policy,
    current_tier: str,
    growth: int,
    referrals: int,
    last_purchase_at: datetime | None,
    at: datetime,
) -> TierGap:
    """What a member in ``current_tier`` lacks for the tier above it."""
    rank = tier_rank(policy, current_tier)
    levels = policy.tiers.levels
    if rank + 1 >= len(levels):
        return TierGap(next_tier=None, growth_missing=0, referrals_missing=None, needs_purchase=False)
    target = levels[rank + 1]
    return TierGap(
        next_tier=target.code,
        growth_missing=max(target.min_growth - growth, 0),
        referrals_missing=None if target.min_referrals is None else max(target.min_referrals - referrals, 0),
        needs_purchase=not purchased_recently(target, last_purchase_at, require_aware(at)),
    )
