"""The fold steps of earning and spending points: purchases, awards, holds, refunds, adjustments, and lots
activating or expiring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.domain import events as ev
from ledger.domain.fold_steps.lots import (
    InvariantBroken,
    account,
    add_lot,
    debit,
    release_allocations,
    return_points,
    share,
)
from ledger.domain.state import GrowthEntry, Hold, LineRecord, MemberState, OrderRecord, Redemption


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
        add_lot(s, new_lot, at, at)
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
        add_lot(s, e.lot, e.at, e.at, e.arrears_repaid)
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


def _committed(s: MemberState, e: ev.HoldCommitted) -> None:
    hold = s.holds.pop(e.hold_id)
    left = dict(hold.allocations)
    for d in e.debits:
        if not (left.get(d.lot_id, 0) >= d.points):
            raise InvariantBroken(f"commit takes more than held on {d.lot_id}")
        left[d.lot_id] -= d.points
    if not (debit(s, e.debits, from_held=True) == e.points):
        raise InvariantBroken("commit debits do not add up")
    release_allocations(s, left)
    s.closed_holds[e.hold_id] = "committed"
    s.committed_holds[e.hold_id] = (e.order_id, e.points)
    s.lifetime_redeemed += e.points
    s.redemptions.setdefault(e.order_id, Redemption()).debits.extend((d.lot_id, d.points) for d in e.debits)
    s.last_activity_at = e.at if s.last_activity_at is None else max(s.last_activity_at, e.at)


def _released(s: MemberState, e: ev.HoldReleased) -> None:
    hold = s.holds.pop(e.hold_id)
    release_allocations(s, hold.allocations)
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
    return_points(s, e, "a refund")
    taken = debit(s, e.debits)
    if not (taken + e.arrears_added + e.forgiven == e.points_taken):
        raise InvariantBroken("take-back does not add up")
    s.arrears += e.arrears_added
    s.lifetime_clawed_back += e.points_taken - e.forgiven
    if e.growth_taken:
        s.growth.append(GrowthEntry(order.occurred_at, -e.growth_taken))


def _adjusted(s: MemberState, e: ev.PointsAdjusted) -> None:
    if e.lot is not None:
        add_lot(s, e.lot, e.at, e.at, e.arrears_repaid)
    debit(s, e.debits)
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
    before = share(lot)
    lot.activated = True
    lot.remaining -= e.arrears_repaid
    account(s, lot, before)
    s.arrears -= e.arrears_repaid
    if s.arrears < 0:
        raise InvariantBroken("arrears below zero")


def _expired(s: MemberState, e: ev.LotExpired) -> None:
    lot = s.lots[e.lot_id]
    if not (not lot.expired and lot.held == 0):
        raise InvariantBroken(f"lot {e.lot_id} expired twice or while held")
    if not (e.points == lot.remaining):
        raise InvariantBroken("expiry must remove exactly what remains")
    before = share(lot)
    lot.remaining = 0
    lot.expired = True
    account(s, lot, before)
    s.lifetime_expired += e.points


STEPS: dict[str, Callable[[MemberState, Any], None]] = {
    "PurchaseRecorded": _purchase,
    "PointsAwarded": _awarded,
    "PointsHeld": _held,
    "HoldCommitted": _committed,
    "HoldReleased": _released,
    "PurchaseRefunded": _refunded,
    "PointsAdjusted": _adjusted,
    "LotActivated": _activated,
    "LotExpired": _expired,
}
"""Event type -> the step that applies it."""
