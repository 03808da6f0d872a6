"""The fold steps of tiers and benefits: tier changes, reviews and overrides, paid membership terms,
entitlements and the grants checked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.domain import events as ev
from ledger.domain.fold_steps.lots import InvariantBroken
from ledger.domain.state import DowngradeNotice, Entitlement, Membership, MemberState, TierOverride, Use


def _tier_changed(s: MemberState, e: ev.TierChanged) -> None:
    s.tier = e.to_tier
    s.tier_since = e.at
    s.tier_history.append((e.at, e.to_tier))
    s.next_review_at = e.next_review_at
    s.downgrade_notice = None


def _tier_reviewed(s: MemberState, e: ev.TierReviewed) -> None:
    if e.outcome == "notice":
        assert e.downgrade_at is not None
        s.downgrade_notice = DowngradeNotice(e.at, e.downgrade_at, e.qualifying_tier)
        s.next_review_at = None
    else:
        s.downgrade_notice = None
        s.next_review_at = e.next_review_at


def _override_set(s: MemberState, e: ev.TierOverrideSet) -> None:
    s.override = TierOverride(e.tier, e.kind, e.at, e.ends_at, e.reason, e.operator_id)
    s.override_history.append(s.override)


def _override_ended(s: MemberState, e: ev.TierOverrideEnded) -> None:
    s.override = None


def _membership_purchased(s: MemberState, e: ev.MembershipPurchased) -> None:
    s.memberships[e.membership_id] = Membership(
        membership_id=e.membership_id,
        plan=e.plan,
        price_fen=e.price_fen,
        purchased_at=e.at,
        term_start=e.term_start,
        term_end=e.term_end,
    )


def _membership_cancelled(s: MemberState, e: ev.MembershipCancelled) -> None:
    s.memberships[e.membership_id].status = "cancelled"


def _membership_lapsed(s: MemberState, e: ev.MembershipLapsed) -> None:
    s.memberships[e.membership_id].status = "lapsed"


def _granted(s: MemberState, e: ev.EntitlementGranted) -> None:
    if e.entitlement_id in s.entitlements:
        raise InvariantBroken(f"entitlement {e.entitlement_id} granted twice")
    s.entitlements[e.entitlement_id] = Entitlement(
        entitlement_id=e.entitlement_id,
        benefit=e.benefit,
        name=e.name,
        kind=e.kind,
        value_fen=e.value_fen,
        valid_from=e.valid_from,
        valid_until=e.valid_until,
        quota_total=e.quota_total,
        quota_per_month=e.quota_per_month,
        source=e.source,
        revoke_on=e.revoke_on,
        granted_at=e.at,
    )
    if e.source.startswith("schedule:") and (s.grants_through is None or e.at > s.grants_through):
        s.grants_through = e.at
    # A membership's own grant has the source ``membership:{membership_id}:{benefit}``, and the id may itself
    # contain ``:``: the id is what lies between the prefix and the benefit code.
    prefix, suffix = "membership:", f":{e.benefit}"
    if e.source.startswith(prefix) and e.source.endswith(suffix):
        membership = s.memberships.get(e.source[len(prefix) : -len(suffix)])
        if membership is not None:
            membership.benefits_granted = True


def _consumed(s: MemberState, e: ev.EntitlementConsumed) -> None:
    ent = s.entitlements[e.entitlement_id]
    ent.uses.append(Use(e.at, e.quantity, e.order_id, e.store_id))
    if not (ent.quota_total is None or ent.used_total <= ent.quota_total):
        raise InvariantBroken("entitlement used beyond its quota")


def _revoked(s: MemberState, e: ev.EntitlementRevoked) -> None:
    ent = s.entitlements[e.entitlement_id]
    ent.revoked_at = e.at
    ent.revoked_reason = e.reason


def _grants_checked(s: MemberState, e: ev.GrantsChecked) -> None:
    if s.grants_through is None or e.at > s.grants_through:
        s.grants_through = e.at


STEPS: dict[str, Callable[[MemberState, Any], None]] = {
    "TierChanged": _tier_changed,
    "TierReviewed": _tier_reviewed,
    "TierOverrideSet": _override_set,
    "TierOverrideEnded": _override_ended,
    "MembershipPurchased": _membership_purchased,
    "MembershipCancelled": _membership_cancelled,
    "MembershipLapsed": _membership_lapsed,
    "EntitlementGranted": _granted,
    "EntitlementConsumed": _consumed,
    "EntitlementRevoked": _revoked,
    "GrantsChecked": _grants_checked,
}
"""Event type -> the step that applies it."""
