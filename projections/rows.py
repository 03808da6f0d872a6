"""The read-model rows of one member, derived from its :class:`~ledger.domain.state.MemberState` (pure; no SQL).

Every row is an immutable ``NamedTuple`` (cheap to build by the million during a rebuild) whose fields are
plain values: ids and codes are ``str``, points and money (fen) are ``int``, times are timezone-aware
``datetime`` objects as the state holds them (the SQLite tables store them as integer microseconds since the
Unix epoch, UTC; see :mod:`projections.codec`). Field order is the tables' column order.

:func:`member_rows` gives the current rows of a member (balance, lots, tier, entitlements, memberships and
the identities that resolve to it); :func:`history_row` gives the history row of one event from the stored
envelope, the decoded event and the balances around it. Collections come in a fixed order (the order the
queries return them), so equal states give equal rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from fractions import Fraction
from typing import Literal, NamedTuple

from ledger.domain import events as ev
from ledger.domain.state import Balances, Entitlement, Lot, Membership, MemberState
from ledger.eventlog.port import StoredEvent

LotStatus = Literal["pending", "active", "spent", "expired"]
"""``pending``: not activated yet; ``active``: activated with points left; ``spent``: activated, nothing left
(redeemed, clawed back or moved by a merge); ``expired``: expired (whatever was left was removed)."""

OPEN_LOT_STATUSES: tuple[LotStatus, ...] = ("pending", "active")
"""Lot statuses that can still change a balance; the others are closed."""

MEMBER_STREAM_PREFIX = "member-"


# -- rows -------------------------------------------------------------------------------------------------------


class BalanceRow(NamedTuple):
    program_id: str
    member_id: str
    version: int
    active: int
    pending: int
    held: int
    available: int
    arrears: int
    lifetime_earned: int
    lifetime_redeemed: int
    lifetime_expired: int
    lifetime_clawed_back: int
    lifetime_returned: int
    lifetime_adjusted: int
    merged_into: str | None


class LotRow(NamedTuple):
    program_id: str
    member_id: str
    lot_id: str
    source: str
    amount: int
    remaining: int
    held: int
    occurred_at: datetime
    active_at: datetime
    expires_at: datetime
    order_id: str | None
    status: LotStatus


class TierRow(NamedTuple):
    program_id: str
    member_id: str
    tier: str
    tier_since: datetime | None
    next_review_at: datetime | None
    downgrade_at: datetime | None
    downgrade_target: str | None
    override_tier: str | None
    override_kind: str | None
    override_ends_at: datetime | None
    override_reason: str | None


class EntitlementRow(NamedTuple):
    program_id: str
    member_id: str
    entitlement_id: str
    benefit: str
    name: str
    kind: str
    value_fen: int | None
    valid_from: datetime
    valid_until: datetime
    quota_total: int | None
    quota_per_month: int | None
    used_total: int
    source: str
    revoked_at: datetime | None
    revoked_reason: str | None


class MembershipRow(NamedTuple):
    program_id: str
    member_id: str
    membership_id: str
    plan: str
    price_fen: int
    term_start: datetime
    term_end: datetime
    status: str


class IdentityRow(NamedTuple):
    program_id: str
    identity: str
    member_id: str


class DueRow(NamedTuple):
    """When the member next has time-driven work (activation, expiry, review, ...); None: nothing scheduled."""

    program_id: str
    member_id: str
    due_at: datetime | None


class HistoryRow(NamedTuple):
    """One event of a member's stream with the balances right after it (``*_after``) and what it changed."""

    program_id: str
    member_id: str
    version: int
    position: int
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    points_delta_active: int
    points_delta_pending: int
    active_after: int
    pending_after: int
    held_after: int
    arrears_after: int
    available_after: int
    policy_version: int | None
    summary: str
    actor_json: str
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class MemberRows:
    """Every current row of one member (history aside), in query order."""

    balance: BalanceRow
    tier: TierRow
    lots: tuple[LotRow, ...]
    entitlements: tuple[EntitlementRow, ...]
    memberships: tuple[MembershipRow, ...]
    identities: tuple[IdentityRow, ...]


# -- from the state ---------------------------------------------------------------------------------------------


def lot_status(lot: Lot) -> LotStatus:
    if lot.expired:
        return "expired"
    if not lot.activated:
        return "pending"
    return "active" if lot.remaining > 0 else "spent"


def balance_row(state: MemberState) -> BalanceRow:
    b = Balances.of(state)
    return BalanceRow(
        state.program_id,
        state.member_id,
        state.version,
        b.active,
        b.pending,
        b.held,
        b.available,
        b.arrears,
        state.lifetime_earned,
        state.lifetime_redeemed,
        state.lifetime_expired,
        state.lifetime_clawed_back,
        state.lifetime_returned,
        state.lifetime_adjusted,
        state.merged_into,
    )


def lot_row(state: MemberState, lot: Lot) -> LotRow:
    return LotRow(
        state.program_id,
        state.member_id,
        lot.lot_id,
        lot.source,
        lot.amount,
        lot.remaining,
        lot.held,
        lot.occurred_at,
        lot.active_at,
        lot.expires_at,
        lot.order_id,
        lot_status(lot),
    )


def lot_rows(state: MemberState) -> tuple[LotRow, ...]:
    """The member's lots, soonest expiry first (then by lot id)."""
    ordered = sorted(state.lots.values(), key=lambda lot: (lot.expires_at, lot.lot_id))
    return tuple(lot_row(state, lot) for lot in ordered)


def tier_row(state: MemberState) -> TierRow:
    notice = state.downgrade_notice
    override = state.override
    return TierRow(
        state.program_id,
        state.member_id,
        state.tier,
        state.tier_since,
        state.next_review_at,
        notice.downgrade_at if notice else None,
        notice.target_tier if notice else None,
        override.tier if override else None,
        override.kind if override else None,
        override.ends_at if override else None,
        override.reason if override else None,
    )


def entitlement_row(state: MemberState, ent: Entitlement) -> EntitlementRow:
    return EntitlementRow(
        state.program_id,
        state.member_id,
        ent.entitlement_id,
        ent.benefit,
        ent.name,
        ent.kind,
        ent.value_fen,
        ent.valid_from,
        ent.valid_until,
        ent.quota_total,
        ent.quota_per_month,
        ent.used_total,
        ent.source,
        ent.revoked_at,
        ent.revoked_reason,
    )


def membership_row(state: MemberState, m: Membership) -> MembershipRow:
    return MembershipRow(
        state.program_id,
        state.member_id,
        m.membership_id,
        m.plan,
        m.price_fen,
        m.term_start,
        m.term_end,
        m.status,
    )


def member_identities(state: MemberState) -> tuple[str, ...]:
    """The identities that resolve to this member: its own and those it absorbed; none once merged away."""
    if state.merged_into is not None:
        return ()
    return tuple(sorted(set(state.identities)))


def member_rows(state: MemberState) -> MemberRows:
    return MemberRows(
        balance=balance_row(state),
        tier=tier_row(state),
        lots=lot_rows(state),
        entitlements=tuple(entitlement_row(state, state.entitlements[k]) for k in sorted(state.entitlements)),
        memberships=tuple(membership_row(state, state.memberships[k]) for k in sorted(state.memberships)),
        identities=tuple(IdentityRow(state.program_id, i, state.member_id) for i in member_identities(state)),
    )


# -- history ----------------------------------------------------------------------------------------------------


_PARSED_STREAMS: dict[str, tuple[str, str]] = {}
_PARSED_STREAMS_MAX = 65536


def parse_member_stream(stream_id: str) -> tuple[str, str]:
    """``(program_id, member_id)`` of ``member-{program_id}-{member_id}`` (program ids contain no ``-``)."""
    parsed = _PARSED_STREAMS.get(stream_id)
    if parsed is not None:
        return parsed
    if not stream_id.startswith(MEMBER_STREAM_PREFIX):
        raise ValueError(f"{stream_id!r} is not a member stream")
    program_id, sep, member_id = stream_id[len(MEMBER_STREAM_PREFIX) :].partition("-")
    if not sep or not program_id or not member_id:
        raise ValueError(f"{stream_id!r} is not a member stream")
    if len(_PARSED_STREAMS) >= _PARSED_STREAMS_MAX:
        _PARSED_STREAMS.clear()
    parsed = _PARSED_STREAMS[stream_id] = (program_id, member_id)
    return parsed


_ACTOR_JSON: dict[tuple[tuple[str, str], ...], str] = {}
_ACTOR_JSON_MAX = 4096


def actor_json(actor: Mapping[str, str]) -> str:
    """The actor mapping as canonical JSON text (sorted keys, no spaces)."""
    key = tuple(actor.items())
    text = _ACTOR_JSON.get(key)
    if text is None:
        text = json.dumps(dict(actor), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if len(_ACTOR_JSON) >= _ACTOR_JSON_MAX:
            _ACTOR_JSON.clear()
        _ACTOR_JSON[key] = text
    return text


def history_row(
    stored: StoredEvent,
    event: ev.MemberEvent,
    before: Balances,
    after: Balances,
    *,
    program_id: str | None = None,
    member_id: str | None = None,
    tz: tzinfo = UTC,
) -> HistoryRow:
    """The history row of ``event`` (stored as ``stored``), ``before`` and ``after`` it was applied.

    The ids come from the stream id unless given; dates in the summary are shown in ``tz`` (the program's
    time zone; UTC by default).
    """
    if program_id is None or member_id is None:
        parsed_program, parsed_member = parse_member_stream(stored.stream_id)
        program_id = program_id if program_id is not None else parsed_program
        member_id = member_id if member_id is not None else parsed_member
    return HistoryRow(
        program_id,
        member_id,
        stored.version,
        stored.position,
        stored.type,
        stored.occurred_at,
        stored.recorded_at,
        after.active - before.active,
        after.pending - before.pending,
        after.active,
        after.pending,
        after.held,
        after.arrears,
        after.active - after.held,
        stored.policy_version,
        summary(event, tz),
        actor_json(stored.actor),
        stored.idempotency_key,
    )


# -- summaries --------------------------------------------------------------------------------------------------


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
    raise TypeError(f"no summary for {type(event).__name__}")  # pragma: no cover - the union is exhaustive
