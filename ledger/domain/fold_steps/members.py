"""The fold steps of a member's life as an account: enrolment, import from the previous system, merges, and
erasure of personal data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.domain import events as ev
from ledger.domain.fold_steps.lots import InvariantBroken, account, add_lot, share
from ledger.domain.state import GrowthEntry, Lot, Membership, MemberState


def _enrolled(s: MemberState, e: ev.MemberEnrolled) -> None:
    if s.enrolled:
        raise InvariantBroken("member enrolled twice")
    s.enrolled_at = e.at
    s.no_profile = e.profile_stored is False
    s.identities = list(e.identities)
    s.tier = e.tier
    s.tier_since = e.at
    s.tier_history.append((e.at, e.tier))
    s.grants_through = e.at


def _merged(s: MemberState, e: ev.MemberMerged) -> None:
    if s.holds:
        raise InvariantBroken("merged with open holds")
    s.merged_into = e.into_member_id
    for lot in s.lots.values():
        before = share(lot)
        lot.remaining = 0
        account(s, lot, before)
    s.arrears = 0
    for ent in s.entitlements.values():
        if ent.revoked_at is None:
            ent.revoked_at = e.at
            ent.revoked_reason = "merged"


def _absorbed(s: MemberState, e: ev.MemberAbsorbed) -> None:
    for t in e.lots:
        s.lot_seq += 1
        if t.lot_id in s.lots:
            raise InvariantBroken(f"lot {t.lot_id} credited twice")
        s.lots[t.lot_id] = Lot(
            lot_id=t.lot_id,
            source="merge",
            amount=t.points,
            remaining=t.points,
            occurred_at=t.occurred_at,
            active_at=t.active_at,
            expires_at=t.expires_at,
            seq=s.lot_seq,
            activated=t.active,
        )
        account(s, s.lots[t.lot_id], (0, 0))
        s.lifetime_earned += t.points
    s.arrears += e.arrears
    s.growth.extend(GrowthEntry(g.at, g.amount) for g in e.growth)
    s.referrals.extend(e.referrals)
    s.identities.extend(e.identities)


def _erased(s: MemberState, e: ev.MemberErased) -> None:
    s.erased_at = e.at
    s.identities = []
    s.no_profile = True  # the profile is destroyed: the rules have nothing to look up any more


def _imported(s: MemberState, e: ev.MemberImported) -> None:
    """A member brought over from the previous system: its state as the event gives it."""
    if s.enrolled:
        raise InvariantBroken("member imported after it was enrolled")
    s.enrolled_at = e.at
    s.no_profile = not e.profile_stored
    s.identities = list(e.identities)
    s.tier = e.tier
    s.tier_since = e.tier_since
    s.tier_history.append((e.tier_since, e.tier))
    s.next_review_at = e.next_review_at
    s.grants_through = e.at
    for lot in e.lots:
        add_lot(s, lot, e.at, lot.active_at)
        s.lifetime_earned += lot.points
    if e.growth:
        if e.growth_window_end is None:
            raise InvariantBroken("imported growth without its window")
        s.growth.append(GrowthEntry(e.growth_window_end, e.growth))
    m = e.membership
    if m is not None:
        s.memberships[m.membership_id] = Membership(
            membership_id=m.membership_id,
            plan=m.plan,
            price_fen=m.price_fen,
            purchased_at=m.term_start,
            term_start=m.term_start,
            term_end=m.term_end,
            benefits_granted=True,  # what the term carried was given by the previous system
        )


STEPS: dict[str, Callable[[MemberState, Any], None]] = {
    "MemberEnrolled": _enrolled,
    "MemberMerged": _merged,
    "MemberAbsorbed": _absorbed,
    "MemberErased": _erased,
    "MemberImported": _imported,
}
"""Event type -> the step that applies it."""
