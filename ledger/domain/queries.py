"""Pure answers every reader shares: a lot's status, an event's one-line summary, its rule and growth, the tier now.

The read models, the gRPC edge and replay all describe the ledger with these functions, so a lot or an event is
named the same way wherever it is shown.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Literal

from ledger.domain import events as ev
from ledger.domain.decide.context import effective_tier
from ledger.domain.state import Lot, MemberState
from policies import Policy

LotStatus = Literal["pending", "active", "spent", "expired"]
"""``expired``: expired (whatever was left was removed); ``spent``: nothing left (redeemed, clawed back - a
refund may take a sale's own lot while it is still pending - or moved by a merge); ``pending``: points left,
not activated yet; ``active``: activated with points left."""


EXPIRING_SOON = timedelta(days=30)
"""How far ahead a balance counts points as expiring soon."""


@dataclass(frozen=True, slots=True)
class BalanceFigures:
    """A member's points at ``as_of``, as a till or an app shows them (the same whether read from the member's
    state or from the read models)."""

    member_id: str
    active: int
    pending: int
    held: int
    available: int
    """Active minus held, never below zero (a member in arrears has nothing to spend)."""
    arrears: int
    expiring_soon: int
    """Points of unexpired lots expiring in ``[as_of, as_of + EXPIRING_SOON)``."""
    next_expiry_at: datetime | None
    next_expiry_points: int
    lifetime_earned: int
    lifetime_redeemed: int
    lifetime_expired: int
    version: int
    as_of: datetime


def balance_figures(state: MemberState, now: datetime) -> BalanceFigures:
    """:class:`BalanceFigures` of ``state`` at ``now`` (due work already applied by the caller)."""
    live = [lot for lot in state.lots.values() if not lot.expired and lot.remaining > 0]
    next_expiry = min((lot.expires_at for lot in live), default=None)
    return BalanceFigures(
        member_id=state.member_id,
        active=state.active,
        pending=state.pending,
        held=state.held,
        available=max(state.available, 0),
        arrears=state.arrears,
        expiring_soon=state.expiring_between(now, now + EXPIRING_SOON),
        next_expiry_at=next_expiry,
        next_expiry_points=sum(lot.remaining for lot in live if lot.expires_at == next_expiry),
        lifetime_earned=state.lifetime_earned,
        lifetime_redeemed=state.lifetime_redeemed,
        lifetime_expired=state.lifetime_expired,
        version=state.version,
        as_of=now,
    )


def lot_status(lot: Lot) -> LotStatus:
    if lot.expired:
        return "expired"
    if lot.remaining <= 0:
        return "spent"
    return "active" if lot.activated else "pending"


# ``_when`` and ``_factor`` are pure and see the same few values again and again (a month's expiry instant, a
# multiplier's text) when a rebuild or a replay writes the summary of every event: both are cached.
@functools.lru_cache(maxsize=4096)
def _when(t: datetime, tz: tzinfo) -> str:
    """A date in ``tz`` (``2026-03-17``), with the time of day when it is not midnight (``2026-03-17 14:30``)."""
    t = t.astimezone(tz)
    day = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
    if not (t.hour or t.minute or t.second or t.microsecond):
        return day
    if t.second or t.microsecond:
        return f"{day} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return f"{day} {t.hour:02d}:{t.minute:02d}"


def _points(n: int) -> str:
    return f"{n:+d} point" + ("" if abs(n) == 1 else "s")


def _money(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


@functools.lru_cache(maxsize=256)
def _factor(text: str) -> str:
    """A multiplier as short exact text: ``"3/2"`` -> ``"1.5"``, ``"1/3"`` stays ``"1/3"``."""
    try:
        ratio = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return text
    if ratio.denominator == 1:
        return str(ratio.numerator)
    rest, twos, fives = ratio.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    if rest != 1:
        return f"{ratio.numerator}/{ratio.denominator}"
    scaled = abs(ratio.numerator) * 10**places // ratio.denominator
    whole, fraction = divmod(scaled, 10**places)
    text_fraction = f"{fraction:0{places}d}".rstrip("0")
    sign = "-" if ratio < 0 else ""
    return f"{sign}{whole}.{text_fraction}" if text_fraction else f"{sign}{whole}"


def _credit(lot: ev.NewLot | None, at: datetime, tz: tzinfo) -> str:
    if lot is None or lot.points == 0:
        return "no points"
    if lot.active_at <= at:
        return f"{_points(lot.points)} active until {_when(lot.expires_at, tz)}"
    return f"{_points(lot.points)} pending until {_when(lot.active_at, tz)}"


def _repaid(points: int) -> str:
    return f", {points} repaid arrears" if points else ""


def summary(event: ev.MemberEvent, tz: tzinfo = UTC) -> str:
    """One human-readable line saying what ``event`` did (dates in ``tz``)."""
    e = event
    if isinstance(e, ev.MemberEnrolled):
        n = len(e.identities)
        return f"enrolled at tier {e.tier} with {n} identit{'y' if n == 1 else 'ies'}"
    if isinstance(e, ev.PurchaseRecorded):
        factor = _factor(e.multiplier)
        boost = f" (x{factor} {e.multiplier_rule})" if factor != "1" else ""
        paid = f", {e.points_paid} points paid" if e.points_paid else ""
        return f"purchase order {e.order_id}: {_credit(e.lot, e.at, tz)}{boost}{paid}"
    if isinstance(e, ev.PointsAwarded):
        return f"{e.behaviour} ({e.reference}): {_credit(e.lot, e.at, tz)}{_repaid(e.arrears_repaid)}"
    if isinstance(e, ev.PointsHeld):
        return f"hold {e.hold_id} for order {e.order_id}: {e.points} points reserved until {_when(e.expires_at, tz)}"
    if isinstance(e, ev.HoldCommitted):
        released = f", {e.released} released" if e.released else ""
        return f"redeemed for order {e.order_id} (hold {e.hold_id}): {_points(-e.points)}{released}"
    if isinstance(e, ev.HoldReleased):
        return f"hold {e.hold_id} {e.reason}: {e.points} points no longer reserved"
    if isinstance(e, ev.PurchaseRefunded):
        parts = [f"refund {e.refund_id} of order {e.order_id} ({_money(e.refunded_fen)} refunded)"]
        details = [f"{_points(-e.points_taken)} taken back" if e.points_taken else "no points taken back"]
        if e.arrears_added:
            details.append(f"{e.arrears_added} into arrears")
        if e.forgiven:
            details.append(f"{e.forgiven} forgiven")
        if e.points_returned:
            details.append(f"{_points(e.points_returned)} returned")
        if e.arrears_repaid:
            details.append(f"{e.arrears_repaid} of them repaid arrears")
        return f"{parts[0]}: {', '.join(details)}"
    if isinstance(e, ev.PointsAdjusted):
        arrears = f", {e.arrears_added} into arrears" if e.arrears_added else ""
        return f"adjustment {e.reason_code} by {e.operator_id}: {_points(e.points)}{_repaid(e.arrears_repaid)}{arrears}"
    if isinstance(e, ev.LotActivated):
        return f"lot {e.lot_id} activated: {_points(e.points)} now usable{_repaid(e.arrears_repaid)}"
    if isinstance(e, ev.LotExpired):
        return f"lot {e.lot_id} expired: {_points(-e.points)}"
    if isinstance(e, ev.TierChanged):
        reason = e.reason.replace("_", " ")
        review = f"; next review {_when(e.next_review_at, tz)}" if e.next_review_at else ""
        return f"tier {e.from_tier} -> {e.to_tier} ({reason}){review}"
    if isinstance(e, ev.TierReviewed):
        if e.outcome == "notice":
            due = _when(e.downgrade_at, tz) if e.downgrade_at else "?"
            return f"tier review: downgrade to {e.qualifying_tier} on {due} unless requalified"
        review = f"; next review {_when(e.next_review_at, tz)}" if e.next_review_at else ""
        if e.outcome == "notice_cleared":
            return f"tier review: downgrade notice cleared{review}"
        return f"tier review: tier kept (qualifies for {e.qualifying_tier}){review}"
    if isinstance(e, ev.TierOverrideSet):
        kind = e.kind.replace("_", " ")
        return f"{kind} to {e.tier} until {_when(e.ends_at, tz)} by {e.operator_id}: {e.reason}"
    if isinstance(e, ev.TierOverrideEnded):
        return f"tier override {e.tier} ended"
    if isinstance(e, ev.MembershipPurchased):
        renewal = f" (renews {e.renewal_of})" if e.renewal_of else ""
        return (
            f"membership {e.membership_id} {e.plan} bought for {_money(e.price_fen)}{renewal}: "
            f"{_when(e.term_start, tz)} to {_when(e.term_end, tz)}"
        )
    if isinstance(e, ev.MembershipCancelled):
        return f"membership {e.membership_id} cancelled ({e.reason}), {_money(e.refund_fen)} refunded"
    if isinstance(e, ev.MembershipLapsed):
        return f"membership {e.membership_id} lapsed"
    if isinstance(e, ev.EntitlementGranted):
        return (
            f"entitlement {e.entitlement_id} granted: {e.name} ({e.benefit}), "
            f"valid {_when(e.valid_from, tz)} to {_when(e.valid_until, tz)}"
        )
    if isinstance(e, ev.EntitlementConsumed):
        return f"entitlement {e.entitlement_id} used x{e.quantity} on order {e.order_id}"
    if isinstance(e, ev.EntitlementRevoked):
        return f"entitlement {e.entitlement_id} revoked ({e.reason})"
    if isinstance(e, ev.GrantsChecked):
        return "periodic grants checked: nothing due"
    if isinstance(e, ev.MemberMerged):
        return f"merged into member {e.into_member_id}: {e.points_moved} points and {e.arrears_moved} arrears moved"
    if isinstance(e, ev.MemberAbsorbed):
        points = sum(t.points for t in e.lots)
        arrears = f" and {e.arrears} arrears" if e.arrears else ""
        return f"absorbed member {e.from_member_id}: {_points(points)} in {len(e.lots)} lots{arrears}"
    if isinstance(e, ev.PointsExchanged):
        cash = f" and {_money(e.cash_fen)}" if e.cash_fen else ""
        return f"exchange {e.exchange_id}: {_points(-e.points)}{cash} for {e.reward_name} ({e.reward_id})"
    if isinstance(e, ev.ExchangeCancelled):
        return (
            f"exchange {e.exchange_id} of {e.reward_id} cancelled ({e.reason}): "
            f"{_points(e.points_returned)} returned{_repaid(e.arrears_repaid)}"
        )
    if isinstance(e, ev.MemberImported):
        points = sum(lot.points for lot in e.lots)
        return (
            f"imported from {e.source} row {e.row} at tier {e.tier}: {_points(points)} in {len(e.lots)} "
            f"opening lot{'' if len(e.lots) == 1 else 's'}, {e.growth} growth"
        )
    if isinstance(e, ev.MemberErased):
        n = e.identities_removed
        return f"personal data erased (request {e.request_reference}): {n} identit{'y' if n == 1 else 'ies'} removed"
    if isinstance(e, ev.HouseholdCreated):
        return f"household opened: owner and up to {e.max_members} members"
    if isinstance(e, ev.HouseholdMemberJoined):
        return f"member {e.member_id} joined the household ({e.members_after} of {e.max_members} members)"
    if isinstance(e, ev.JoinedHousehold):
        return f"joined the household of member {e.owner_member_id}"
    if isinstance(e, ev.HouseholdMemberLeft):
        return f"member {e.member_id} left the household ({e.members_after} members left)"
    if isinstance(e, ev.LeftHousehold):
        return f"left the household of member {e.owner_member_id}"
    if isinstance(e, ev.HouseholdClosed):
        return "household closed"
    if isinstance(e, ev.PointsTransferredOut):
        return f"transfer {e.transfer_id} to member {e.to_member_id}: {_points(-e.points)}"
    if isinstance(e, ev.PointsTransferredIn):
        n = len(e.lots)
        return (
            f"transfer {e.transfer_id} from member {e.from_member_id}: {_points(e.points)} in {n} "
            f"lot{'' if n == 1 else 's'} keeping their expiry{_repaid(e.arrears_repaid)}"
        )
    if isinstance(e, ev.HouseholdGrowthCounted):
        return f"household growth from member {e.from_member_id}: {e.amount:+d} toward the owner's tier"
    raise TypeError(f"no summary for {type(event).__name__}")  # pragma: no cover - the union is exhaustive


def current_tier(state: MemberState, policy: Policy, now: datetime) -> str:
    """The tier in effect now: the earned tier or an override, and a paid plan's tier if better."""
    tier = effective_tier(state, policy, now)
    override = state.override_at(now)
    if override is not None and override.kind == "override":
        return tier
    codes = [level.code for level in policy.tiers.levels]
    for plan in state.active_plans(now):
        plan_rule = policy.memberships.get(plan)
        plan_tier = getattr(plan_rule, "tier", None) if plan_rule is not None else None
        if isinstance(plan_tier, str) and plan_tier in codes and codes.index(plan_tier) > codes.index(tier):
            tier = plan_tier
    return tier


def rule(event: ev.MemberEvent) -> str:
    """The rule that decided an event's numbers, if any."""
    match event:
        case ev.PurchaseRecorded():
            return event.multiplier_rule
        case ev.PointsAwarded():
            return f"behaviour:{event.behaviour}"
        case ev.LotExpired():
            return "expiry"
        case ev.HoldReleased():
            return "hold_timeout" if event.reason == "expired" else ""
        case ev.TierChanged():
            return event.reason
        case ev.TierReviewed():
            return f"review_{event.outcome}"
        case ev.PurchaseRefunded():
            return f"clawback:{event.clawback}"
        case ev.EntitlementGranted():
            return event.source
        case ev.PointsExchanged() | ev.ExchangeCancelled():
            return f"mall:{event.reward_id}"
        case ev.MemberImported():
            return f"import:{event.source}#{event.row}"
        case ev.PointsTransferredOut() | ev.PointsTransferredIn():
            return f"household_transfer:{event.transfer_id}"
        case _:
            return ""


def order_of(event: ev.MemberEvent) -> str:
    """The order an event is about ("" for none)."""
    return str(getattr(event, "order_id", "") or "")


def tier_in_effect(state: MemberState, policy: Policy | None, at: datetime) -> str:
    """The tier in effect at ``at`` for ``state`` (the earned tier or an override) under ``policy``, the version
    in force at ``at``; the stored tier when no policy was in force then or this version cannot rank it."""
    if policy is None:
        return state.tier
    try:
        return effective_tier(state, policy, at)
    except Exception:  # e.g. UnknownTier: a tier this policy version cannot rank; the stored tier stands
        return state.tier


def growth_delta(event: ev.MemberEvent) -> int:
    match event:
        case ev.PurchaseRecorded() | ev.PointsAwarded():
            return event.growth
        case ev.PurchaseRefunded():
            return -event.growth_taken
        case ev.MemberAbsorbed():
            return sum(g.amount for g in event.growth)
        case ev.MemberImported():
            return event.growth
        case ev.HouseholdGrowthCounted():
            return event.amount
        case _:
            return 0
