"""Where a member stands now: tier progress, entitlements' use, a membership's cooling-off, behaviour caps (pure).

The queries an answer needs beyond the member's state itself, computed by the same rules the decider uses, so
the gRPC edge and any other reader ask here instead of reaching into ``decide`` or ``policies.rules``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime

from ledger.domain.decide.benefits import EntitlementStatus, entitlement_status, used_in_month
from ledger.domain.decide.earning import CapPeriod, CapUsage, cap_usage
from ledger.domain.queries import current_tier
from ledger.domain.state import DowngradeNotice, Entitlement, Membership, MemberState, TierOverride
from policies import Policy
from policies.rules.household import transfer_month
from policies.rules.memberships import cooling_off_end
from policies.rules.tiers import tier_gap, window_start

__all__ = [
    "CapPeriod",
    "CapUsage",
    "EntitlementUse",
    "HouseholdStanding",
    "TierStanding",
    "cap_usage",
    "cooling_off_ends",
    "entitlement_use",
    "household_standing",
    "tier_standing",
]


@dataclass(frozen=True, slots=True)
class TierStanding:
    """A member's tier at ``now``, the growth and referrals in the window, and what the next tier still needs."""

    tier: str
    """In effect now: the earned tier or an override."""
    earned_tier: str
    since: datetime | None
    window_start: datetime
    growth_in_window: int
    referrals_in_window: int
    next_tier: str | None
    growth_needed: int
    referrals_needed: int | None
    purchase_needed: bool
    next_review_at: datetime | None
    downgrade_notice: DowngradeNotice | None
    override: TierOverride | None
    memberships: tuple[Membership, ...]
    """Newest purchase first."""
    version: int


def tier_standing(state: MemberState, policy: Policy, now: datetime) -> TierStanding:
    start = window_start(policy, now)
    growth = state.growth_between(start, now)
    referrals = state.referrals_between(start, now)
    gap = tier_gap(policy, state.tier, growth, referrals, state.last_purchase_at, now)
    return TierStanding(
        tier=current_tier(state, policy, now),
        earned_tier=state.tier,
        since=state.tier_since,
        window_start=start,
        growth_in_window=growth,
        referrals_in_window=referrals,
        next_tier=gap.next_tier,
        growth_needed=gap.growth_missing if gap.next_tier else 0,
        referrals_needed=gap.referrals_missing,
        purchase_needed=gap.needs_purchase,
        next_review_at=state.next_review_at,
        downgrade_notice=state.downgrade_notice,
        override=state.override_at(now),
        memberships=tuple(sorted(state.memberships.values(), key=lambda m: m.purchased_at, reverse=True)),
        version=state.version,
    )


@dataclass(frozen=True, slots=True)
class EntitlementUse:
    status: EntitlementStatus
    """At the time asked (revoked, used up, expired or available)."""
    used_this_month: int


def entitlement_use(ent: Entitlement, policy: Policy | None, at: datetime) -> EntitlementUse:
    """The entitlement's status at ``at`` and its use in that (local) month; none counted without a policy."""
    return EntitlementUse(entitlement_status(ent, at), used_in_month(ent, policy, at) if policy is not None else 0)


def cooling_off_ends(policy: Policy | None, membership: Membership) -> datetime | None:
    """When the paid membership's cooling-off period ends (None: no policy, or a plan it does not know)."""
    if policy is None:
        return None
    with contextlib.suppress(LookupError):
        return cooling_off_end(policy, membership.plan, membership.purchased_at)
    return None


@dataclass(frozen=True, slots=True)
class HouseholdStanding:
    """What a member may still give in the local month of ``at``, and the most one transfer may move."""

    left_this_month: int
    per_transfer_max: int


def household_standing(state: MemberState, policy: Policy, at: datetime) -> HouseholdStanding:
    limits = policy.household.transfers
    start, end = transfer_month(policy, at)
    left = max(limits.per_month_per_giver - state.given_between(start, end), 0) if policy.household.enabled else 0
    return HouseholdStanding(left, limits.per_transfer_max)
