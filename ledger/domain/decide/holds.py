"""Checkout redemption: hold points, then commit (possibly fewer) or release; an open hold times out."""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.domain import events as ev
from ledger.domain.commands import CommitHold, HoldPoints, ReleaseHold
from ledger.domain.decide.context import Context, effective_tier
from ledger.domain.decide.lots import spendable_lots, take
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import Hold, MemberState
from policies import format_ratio, points_value_fen, redemption_cap_points, redemption_share

MAX_HOLD_TTL_SECONDS = 3600


def hold(command: HoldPoints, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    if command.points <= 0:
        raise InvalidCommand("points", "must be positive")
    if command.order_total_fen <= 0:
        raise InvalidCommand("order_total_fen", "must be positive")
    if command.hold_id in state.holds or command.hold_id in state.closed_holds:
        raise Refusal("HOLD_EXISTS", f"hold {command.hold_id} already exists", {"id": command.hold_id})
    pv = ctx.policy_at(ctx.now)
    policy = pv.policy
    ttl = command.ttl_seconds or policy.redemption.hold_ttl_seconds
    if not 0 < ttl <= MAX_HOLD_TTL_SECONDS:
        raise InvalidCommand("ttl_seconds", f"must be between 1 and {MAX_HOLD_TTL_SECONDS}")
    tier = effective_tier(state, policy, ctx.now)
    plans = state.active_plans(ctx.now)
    cap = redemption_cap_points(policy, tier, plans, command.order_total_fen)
    redeemed = state.redemptions.get(command.order_id)
    already = sum(h.points for h in state.holds.values() if h.order_id == command.order_id) + (
        redeemed.points if redeemed is not None else 0
    )
    if already + command.points > cap:
        raise Refusal(
            "REDEMPTION_CAP_EXCEEDED",
            f"points may pay at most {cap} points of this order at tier {tier}; {already} already held or committed",
            {
                "cap_points": cap,
                "already_held": already,
                "requested": command.points,
                "order_total_fen": command.order_total_fen,
                "cap_share": format_ratio(redemption_share(policy, tier, plans)),
                "tier": tier,
            },
        )
    expires_at = ctx.now + timedelta(seconds=ttl)
    lots = spendable_lots(state, not_expiring_before=expires_at)
    allocations, missing = take(lots, command.points)
    if missing > 0:
        raise Refusal(
            "INSUFFICIENT_POINTS",
            f"{command.points} points requested, {command.points - missing} available",
            {"available": command.points - missing, "requested": command.points},
        )
    return [
        ev.PointsHeld(
            at=ctx.now,
            hold_id=command.hold_id,
            order_id=command.order_id,
            points=command.points,
            order_total_fen=command.order_total_fen,
            cap_points=cap,
            value_fen=points_value_fen(policy, command.points),
            expires_at=expires_at,
            allocations=tuple(allocations),
            policy_version=pv.version,
        )
    ]


def _open_hold(state: MemberState, hold_id: str, *, commit: bool) -> Hold:
    """The open hold ``hold_id``. A hold that timed out is HOLD_EXPIRED for a commit (the sale cannot be paid
    with it), HOLD_NOT_OPEN with status EXPIRED for a release (there is nothing left to release)."""
    found = state.holds.get(hold_id)
    if found is not None:
        return found
    closed = state.closed_holds.get(hold_id)
    if closed == "expired" and commit:
        expired_at = state.hold_expired_at.get(hold_id)
        raise Refusal(
            "HOLD_EXPIRED",
            f"hold {hold_id} timed out and was released",
            {"hold_id": hold_id, **({"expired_at": expired_at} if expired_at is not None else {})},
        )
    if closed is not None:
        raise Refusal(
            "HOLD_NOT_OPEN", f"hold {hold_id} was already {closed}", {"hold_id": hold_id, "status": closed.upper()}
        )
    raise NotFound("hold", hold_id)


def commit(command: CommitHold, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    held = _open_hold(state, command.hold_id, commit=True)
    points = command.points or held.points
    if points < 0:
        raise InvalidCommand("points", "must not be negative")
    if points > held.points:
        raise Refusal(
            "INSUFFICIENT_POINTS",
            f"commit of {points} points exceeds the {held.points} held",
            {"available": held.points, "requested": points, "held": held.points},
        )
    lots = sorted((state.lots[lot_id] for lot_id in held.allocations), key=lambda lot: lot.order_key())
    debits, missing = take(lots, points, capacity=held.allocations)
    assert missing == 0, "a hold's allocations cover what it holds"
    return [
        ev.HoldCommitted(
            at=ctx.now,
            hold_id=held.hold_id,
            order_id=held.order_id,
            points=points,
            debits=tuple(debits),
            released=held.points - points,
        )
    ]


def release(command: ReleaseHold, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    held = _open_hold(state, command.hold_id, commit=False)
    return [ev.HoldReleased(at=ctx.now, hold_id=held.hold_id, points=held.points, reason="released")]


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    return min((h.expires_at for h in state.holds.values()), default=None)


def run_due(state: MemberState, at: datetime, ctx: Context) -> list[ev.MemberEvent]:
    return [
        ev.HoldReleased(at=h.expires_at, hold_id=h.hold_id, points=h.points, reason="expired")
        for h in sorted(state.holds.values(), key=lambda h: (h.expires_at, h.hold_id))
        if h.expires_at <= at
    ]
