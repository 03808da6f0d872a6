"""The events of tiers and benefits: tier changes, reviews and overrides, paid membership terms, and the
entitlements they and the grant schedule give."""

from __future__ import annotations

from typing import Literal

from ledger.domain.member_events.base import Instant, _Event


class TierChanged(_Event):
    type: Literal["TierChanged"] = "TierChanged"
    from_tier: str
    to_tier: str
    reason: Literal["upgrade", "review_downgrade", "merge"]
    growth_in_window: int
    referrals_in_window: int
    next_review_at: Instant | None = None  # None: the entry tier, which has no review
    policy_version: int


class TierReviewed(_Event):
    """A review: the member keeps the tier, or a downgrade notice starts the grace period."""

    type: Literal["TierReviewed"] = "TierReviewed"
    outcome: Literal["kept", "notice", "notice_cleared"]
    qualifying_tier: str
    growth_in_window: int
    next_review_at: Instant | None
    downgrade_at: Instant | None
    policy_version: int


class TierOverrideSet(_Event):
    type: Literal["TierOverrideSet"] = "TierOverrideSet"
    tier: str
    kind: Literal["temporary_upgrade", "override"]
    ends_at: Instant
    reason: str
    operator_id: str


class TierOverrideEnded(_Event):
    type: Literal["TierOverrideEnded"] = "TierOverrideEnded"
    tier: str


class MembershipPurchased(_Event):
    type: Literal["MembershipPurchased"] = "MembershipPurchased"
    membership_id: str
    plan: str
    price_fen: int
    term_start: Instant
    term_end: Instant
    renewal_of: str | None
    policy_version: int


class MembershipCancelled(_Event):
    type: Literal["MembershipCancelled"] = "MembershipCancelled"
    membership_id: str
    refund_fen: int
    reason: str


class MembershipLapsed(_Event):
    type: Literal["MembershipLapsed"] = "MembershipLapsed"
    membership_id: str


class EntitlementGranted(_Event):
    type: Literal["EntitlementGranted"] = "EntitlementGranted"
    entitlement_id: str
    benefit: str
    name: str
    kind: str
    value_fen: int | None
    valid_from: Instant
    valid_until: Instant
    quota_total: int | None
    quota_per_month: int | None
    source: str
    revoke_on: tuple[str, ...]
    policy_version: int


class EntitlementConsumed(_Event):
    type: Literal["EntitlementConsumed"] = "EntitlementConsumed"
    entitlement_id: str
    quantity: int
    order_id: str
    store_id: str


class EntitlementRevoked(_Event):
    type: Literal["EntitlementRevoked"] = "EntitlementRevoked"
    entitlement_id: str
    reason: str


class GrantsChecked(_Event):
    """The periodic grants due at ``at`` were considered and none applied to this member."""

    type: Literal["GrantsChecked"] = "GrantsChecked"
