"""``evolve``: apply one recorded event to a member's state.

It reads the answers the event records (lots, debits, multipliers, tiers) and never asks a policy rule again.
Invariants are asserted here and stay on in production: a broken invariant means the log or the decider is
wrong, and the ledger must stop rather than carry on with a wrong balance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ledger.domain import events as ev
from ledger.domain.state import (
    DowngradeNotice,
    Entitlement,
    Exchange,
    GrowthEntry,
    Hold,
    LineRecord,
    Lot,
    Membership,
    MemberState,
    OrderRecord,
    Redemption,
    TierOverride,
    Use,
)


class InvariantBroken(AssertionError):
    """The log contradicts itself; the member must not be served from this state."""


# The invariant checks below are written as ``if <broken>: raise InvariantBroken(...)`` so that the message is
# only formatted when a check fails: they run for every event applied, and stay on in production.


def _share(lot: Lot) -> tuple[int, int]:
    """What a lot adds to the member's (active, pending) totals."""
    if lot.expired:
        return 0, 0
    return (lot.remaining, 0) if lot.activated else (0, lot.remaining)


def _account(state: MemberState, lot: Lot, before: tuple[int, int]) -> None:
    after = _share(lot)
    state.active_total += after[0] - before[0]
    state.pending_total += after[1] - before[1]


def _add_lot(state: MemberState, new: ev.NewLot, at_: datetime, occurred_at: datetime, repaid: int = 0) -> Lot:
    if new.lot_id in state.lots:
        raise InvariantBroken(f"lot {new.lot_id} credited twice")
    points = new.points
    if not 0 <= repaid <= points:
        raise InvariantBroken(f"lot {new.lot_id} repays {repaid} of {points}")
    seq = state.lot_seq = state.lot_seq + 1
    active_at = new.active_at
    activated = active_at <= at_
    remaining = points - repaid
    # Positional, in field order: lot_id, source, amount, remaining, occurred_at, active_at, expires_at, seq,
    # order_id (a new lot holds nothing and is not expired).
    lot = Lot(new.lot_id, new.source, points, remaining, occurred_at, active_at, new.expires_at, seq, new.order_id)
    lot.activated = activated
    state.lots[lot.lot_id] = lot
    # What ``_account(state, lot, (0, 0))`` adds for a lot that is not expired.
    if activated:
        state.active_total += remaining
    else:
        state.pending_total += remaining
    if repaid:
        state.arrears -= repaid
    if state.arrears < 0:
        raise InvariantBroken("arrears below zero")
    return lot


def _debit(state: MemberState, debits: Iterable[ev.LotDebit], *, from_held: bool = False) -> int:
    total = 0
    for d in debits:
        lot = state.lots.get(d.lot_id)
        if lot is None:
            raise InvariantBroken(f"debit from unknown lot {d.lot_id}")
        assert lot is not None
        if d.points <= 0:
            raise InvariantBroken("debit of zero or fewer points")
        before = _share(lot)
        if from_held:
            lot.held -= d.points
        lot.remaining -= d.points
        _account(state, lot, before)
        if lot.remaining < 0:
            raise InvariantBroken(f"lot {lot.lot_id} below zero")
        if not 0 <= lot.held <= lot.remaining:
            raise InvariantBroken(f"lot {lot.lot_id} holds more than it has")
        total += d.points
    return total


def evolve(state: MemberState, event: ev.MemberEvent) -> MemberState:
    """Apply ``event`` to ``state`` in place and return it."""
    _APPLY[event.type](state, event)
    state.version += 1
    return state


def fold(state: MemberState, events: Iterable[ev.MemberEvent]) -> MemberState:
    for event in events:
        evolve(state, event)
    return state


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


def _purchase(s: MemberState, e: ev.PurchaseRecorded) -> None:
    order_id = e.order_id
    if order_id in s.orders:
        raise InvariantBroken(f"order {order_id} recorded twice")
    at = e.at
    new_lot = e.lot
    lines: dict[str, LineRecord] = {}
    paid_fen = 0
    for ln in e.lines:
        lines[ln.line_id] = LineRecord(ln.paid_fen, ln.points)
        paid_fen += ln.paid_fen
    # Positional, in field order: order_id, occurred_at, lot_id, lines, paid_fen, growth, points_paid.
    s.orders[order_id] = OrderRecord(
        order_id, at, new_lot.lot_id if new_lot else None, lines, paid_fen, e.growth, e.points_paid
    )
    if new_lot is not None:
        _add_lot(s, new_lot, at, at)
    s.lifetime_earned += e.points
    s.growth.append(GrowthEntry(at, e.growth))
    # ``max(last, at)`` keeps ``last`` when the two are equal; so does this.
    last = s.last_purchase_at
    if last is None or at > last:
        s.last_purchase_at = at
    last = s.last_activity_at
    if last is None or at > last:
        s.last_activity_at = at


def _awarded(s: MemberState, e: ev.PointsAwarded) -> None:
    if e.lot is not None:
        _add_lot(s, e.lot, e.at, e.at, e.arrears_repaid)
    s.lifetime_earned += e.points
    if e.growth:
        s.growth.append(GrowthEntry(e.at, e.growth))
    s.behaviour_log.append((e.at, e.cap_group))
    if e.reference:
        s.awarded_references.add((e.behaviour, e.reference))
    if e.counts_as_referral:
        s.referrals.append(e.at)
    s.last_activity_at = e.at if s.last_activity_at is None else max(s.last_activity_at, e.at)


def _held(s: MemberState, e: ev.PointsHeld) -> None:
    if not (e.hold_id not in s.holds and e.hold_id not in s.closed_holds):
        raise InvariantBroken(f"hold {e.hold_id} opened twice")
    if not (sum(a.points for a in e.allocations) == e.points):
        raise InvariantBroken("hold allocations do not add up")
    for a in e.allocations:
        lot = s.lots[a.lot_id]
        lot.held += a.points
        if not (lot.activated and not lot.expired and lot.held <= lot.remaining):
            raise InvariantBroken(f"overheld lot {a.lot_id}")
    s.holds[e.hold_id] = Hold(
        hold_id=e.hold_id,
        order_id=e.order_id,
        points=e.points,
        order_total_fen=e.order_total_fen,
        expires_at=e.expires_at,
        allocations={a.lot_id: a.points for a in e.allocations},
    )


def _release_allocations(s: MemberState, allocations: dict[str, int]) -> None:
    for lot_id, points in allocations.items():
        if points:
            lot = s.lots[lot_id]
            lot.held -= points
            if not (lot.held >= 0):
                raise InvariantBroken(f"lot {lot_id} released more than held")


def _committed(s: MemberState, e: ev.HoldCommitted) -> None:
    hold = s.holds.pop(e.hold_id)
    left = dict(hold.allocations)
    for d in e.debits:
        if not (left.get(d.lot_id, 0) >= d.points):
            raise InvariantBroken(f"commit takes more than held on {d.lot_id}")
        left[d.lot_id] -= d.points
    if not (_debit(s, e.debits, from_held=True) == e.points):
        raise InvariantBroken("commit debits do not add up")
    _release_allocations(s, left)
    s.closed_holds[e.hold_id] = "committed"
    s.committed_holds[e.hold_id] = (e.order_id, e.points)
    s.lifetime_redeemed += e.points
    s.redemptions.setdefault(e.order_id, Redemption()).debits.extend((d.lot_id, d.points) for d in e.debits)
    s.last_activity_at = e.at if s.last_activity_at is None else max(s.last_activity_at, e.at)


def _released(s: MemberState, e: ev.HoldReleased) -> None:
    hold = s.holds.pop(e.hold_id)
    _release_allocations(s, hold.allocations)
    s.closed_holds[e.hold_id] = e.reason
    if e.reason == "expired":
        s.hold_expired_at[e.hold_id] = e.at


def _refunded(s: MemberState, e: ev.PurchaseRefunded) -> None:
    order = s.orders[e.order_id]
    if e.refund_id in order.refund_ids:
        raise InvariantBroken(f"refund {e.refund_id} applied twice")
    order.refund_ids.add(e.refund_id)
    for ln in e.lines:
        rec = order.lines[ln.line_id]
        rec.refunded_fen += ln.refunded_fen
        rec.taken_back += ln.points_taken
        if not (rec.refunded_fen <= rec.paid_fen):
            raise InvariantBroken(f"line {ln.line_id} refunded beyond what it paid")
    order.refunded_fen += e.refunded_fen
    order.growth_taken += e.growth_taken
    order.points_returned += e.points_returned
    _return_points(s, e, "a refund")
    taken = _debit(s, e.debits)
    if not (taken + e.arrears_added + e.forgiven == e.points_taken):
        raise InvariantBroken("take-back does not add up")
    s.arrears += e.arrears_added
    s.lifetime_clawed_back += e.points_taken - e.forgiven
    if e.growth_taken:
        s.growth.append(GrowthEntry(order.occurred_at, -e.growth_taken))


def _adjusted(s: MemberState, e: ev.PointsAdjusted) -> None:
    if e.lot is not None:
        _add_lot(s, e.lot, e.at, e.at, e.arrears_repaid)
    _debit(s, e.debits)
    s.arrears += e.arrears_added
    s.lifetime_adjusted += e.points
    if e.points > 0:
        s.lifetime_earned += e.points


def _activated(s: MemberState, e: ev.LotActivated) -> None:
    lot = s.lots[e.lot_id]
    if lot.activated:
        raise InvariantBroken(f"lot {e.lot_id} activated twice")
    if not (e.arrears_repaid <= lot.remaining):
        raise InvariantBroken("activation repays more than the lot holds")
    before = _share(lot)
    lot.activated = True
    lot.remaining -= e.arrears_repaid
    _account(s, lot, before)
    s.arrears -= e.arrears_repaid
    if s.arrears < 0:
        raise InvariantBroken("arrears below zero")


def _expired(s: MemberState, e: ev.LotExpired) -> None:
    lot = s.lots[e.lot_id]
    if not (not lot.expired and lot.held == 0):
        raise InvariantBroken(f"lot {e.lot_id} expired twice or while held")
    if not (e.points == lot.remaining):
        raise InvariantBroken("expiry must remove exactly what remains")
    before = _share(lot)
    lot.remaining = 0
    lot.expired = True
    _account(s, lot, before)
    s.lifetime_expired += e.points


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
    if e.source.startswith("membership:"):
        membership = s.memberships.get(e.source.split(":", 2)[1])
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


def _merged(s: MemberState, e: ev.MemberMerged) -> None:
    if s.holds:
        raise InvariantBroken("merged with open holds")
    s.merged_into = e.into_member_id
    for lot in s.lots.values():
        before = _share(lot)
        lot.remaining = 0
        _account(s, lot, before)
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
        _account(s, s.lots[t.lot_id], (0, 0))
        s.lifetime_earned += t.points
    s.arrears += e.arrears
    s.growth.extend(GrowthEntry(g.at, g.amount) for g in e.growth)
    s.referrals.extend(e.referrals)
    s.identities.extend(e.identities)


def _erased(s: MemberState, e: ev.MemberErased) -> None:
    s.erased_at = e.at
    s.identities = []
    s.no_profile = True  # the profile is destroyed: the rules have nothing to look up any more


def _exchanged(s: MemberState, e: ev.PointsExchanged) -> None:
    if e.exchange_id in s.exchanges:
        raise InvariantBroken(f"exchange {e.exchange_id} recorded twice")
    if not (_debit(s, e.debits) == e.points):
        raise InvariantBroken("exchange debits do not add up")
    s.exchanges[e.exchange_id] = Exchange(
        e.exchange_id, e.reward_id, e.reward_name, e.at, e.points, e.cash_fen,
        [(d.lot_id, d.points) for d in e.debits], e.entitlement_id, e.stock_stream, e.policy_version,
    )  # fmt: skip
    s.lifetime_redeemed += e.points
    s.last_activity_at = e.at if s.last_activity_at is None else max(s.last_activity_at, e.at)


def _exchange_cancelled(s: MemberState, e: ev.ExchangeCancelled) -> None:
    x = s.exchanges.get(e.exchange_id)
    if x is None or x.cancelled_at is not None:
        raise InvariantBroken(f"exchange {e.exchange_id} cancelled while not open")
    if e.points_returned != x.points:
        raise InvariantBroken(f"exchange {e.exchange_id} returns {e.points_returned} of {x.points} points")
    _return_points(s, e, "a cancelled exchange")
    x.cancelled_at = e.at
    x.cancel_reason = e.reason


def _return_points(s: MemberState, e: ev.PurchaseRefunded | ev.ExchangeCancelled, what: str) -> None:
    """Points given back (by a refund of a points-paid order, or a cancelled exchange): into the lots they came
    from (``returned``), and as a new lot (``relot``) for the part whose lot had expired, which repays arrears first."""
    for r in e.returned:
        lot = s.lots[r.lot_id]
        before = _share(lot)
        lot.remaining += r.points
        _account(s, lot, before)
        if not (lot.remaining <= lot.amount):
            raise InvariantBroken(f"lot {r.lot_id} refilled beyond its amount")
    if e.relot is not None:
        _add_lot(s, e.relot, e.at, e.at, e.arrears_repaid)
    elif e.arrears_repaid:
        raise InvariantBroken(f"{what} repays arrears only from the points it returns as a new lot")
    if sum(r.points for r in e.returned) + (e.relot.points if e.relot else 0) != e.points_returned:
        raise InvariantBroken("returned points do not add up")
    s.lifetime_returned += e.points_returned


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
        _add_lot(s, lot, e.at, lot.active_at)
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


def _household_created(s: MemberState, e: ev.HouseholdCreated) -> None:
    if s.household_of is not None:
        raise InvariantBroken("household opened by a member already in one")
    s.household_of = s.member_id
    s.household_members = []
    s.household_max = e.max_members


def _household_member_joined(s: MemberState, e: ev.HouseholdMemberJoined) -> None:
    if not s.owns_household or e.member_id in s.household_members:
        raise InvariantBroken(f"member {e.member_id} joined a household that cannot take it")
    s.household_members.append(e.member_id)
    if len(s.household_members) != e.members_after:
        raise InvariantBroken("household member count does not add up")


def _joined_household(s: MemberState, e: ev.JoinedHousehold) -> None:
    if s.household_of is not None:
        raise InvariantBroken("joined a household while in one")
    s.household_of = e.owner_member_id


def _household_member_left(s: MemberState, e: ev.HouseholdMemberLeft) -> None:
    if not s.owns_household or e.member_id not in s.household_members:
        raise InvariantBroken(f"member {e.member_id} left a household it was not in")
    s.household_members.remove(e.member_id)
    if len(s.household_members) != e.members_after:
        raise InvariantBroken("household member count does not add up")


def _left_household(s: MemberState, e: ev.LeftHousehold) -> None:
    if s.household_of != e.owner_member_id or s.owns_household:
        raise InvariantBroken(f"left household {e.owner_member_id} while not a member of it")
    s.household_of = None


def _household_closed(s: MemberState, e: ev.HouseholdClosed) -> None:
    if not s.owns_household or s.household_members:
        raise InvariantBroken("closed a household that is not its own or not empty")
    s.household_of = None
    s.household_max = 0


def _transferred_out(s: MemberState, e: ev.PointsTransferredOut) -> None:
    if e.transfer_id in s.transfers_out:
        raise InvariantBroken(f"transfer {e.transfer_id} recorded twice")
    if _debit(s, e.debits) != e.points:
        raise InvariantBroken("transfer debits do not add up")
    s.transfers_out[e.transfer_id] = (e.at, e.points)


def _transferred_in(s: MemberState, e: ev.PointsTransferredIn) -> None:
    total = 0
    for t in e.lots:
        new = ev.NewLot(lot_id=t.lot_id, source="transfer", points=t.points, active_at=t.active_at,
                        expires_at=t.expires_at)  # fmt: skip
        # the giver's points were active: so is the lot, whatever the transfer's business time
        _add_lot(s, new, max(e.at, t.active_at), t.occurred_at, t.arrears_repaid)
        total += t.points
    if total != e.points or sum(t.arrears_repaid for t in e.lots) != e.arrears_repaid:
        raise InvariantBroken("transferred lots do not add up")


def _household_growth_counted(s: MemberState, e: ev.HouseholdGrowthCounted) -> None:
    if not s.owns_household:
        raise InvariantBroken("household growth counted for a member that owns no household")
    s.growth.append(GrowthEntry(e.at, e.amount))


_APPLY: dict[str, Callable[[MemberState, Any], None]] = {
    "MemberEnrolled": _enrolled,
    "PurchaseRecorded": _purchase,
    "PointsAwarded": _awarded,
    "PointsHeld": _held,
    "HoldCommitted": _committed,
    "HoldReleased": _released,
    "PurchaseRefunded": _refunded,
    "PointsAdjusted": _adjusted,
    "LotActivated": _activated,
    "LotExpired": _expired,
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
    "MemberMerged": _merged,
    "MemberAbsorbed": _absorbed,
    "MemberErased": _erased,
    "PointsExchanged": _exchanged,
    "ExchangeCancelled": _exchange_cancelled,
    "MemberImported": _imported,
    "HouseholdCreated": _household_created,
    "HouseholdMemberJoined": _household_member_joined,
    "JoinedHousehold": _joined_household,
    "HouseholdMemberLeft": _household_member_left,
    "LeftHousehold": _left_household,
    "HouseholdClosed": _household_closed,
    "PointsTransferredOut": _transferred_out,
    "PointsTransferredIn": _transferred_in,
    "HouseholdGrowthCounted": _household_growth_counted,
}
