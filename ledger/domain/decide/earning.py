"""Earning: purchases and behaviours."""

from __future__ import annotations

from datetime import timedelta

from ledger.domain import events as ev
from ledger.domain.commands import AwardPoints, RecordPurchase
from ledger.domain.decide import benefits, tiers
from ledger.domain.decide.context import Context, check_business_time, effective_tier, next_id
from ledger.domain.decide.lots import repaid
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.state import MemberState
from policies import (
    CapReached,
    EarningContext,
    OrderEarning,
    UnknownBehaviour,
    behaviour_award,
    earn_order,
    local_day_start,
    local_month_start,
    lot_expiry,
)


def quote(command: RecordPurchase, state: MemberState, ctx: Context) -> OrderEarning:
    """What the order would earn, under the rules in force at its business time (no effect)."""
    _validate_lines(command)
    policy = ctx.version.policy
    tier = effective_tier(state, policy, ctx.at)
    earning_ctx = EarningContext(
        occurred_at=ctx.at,
        tier=tier,
        active_plans=state.active_plans(ctx.at),
        birth_month=ctx.profile.birth_month,
        last_activity_at=state.last_activity_at or state.enrolled_at,
    )
    return earn_order(policy, command.lines, earning_ctx)


def record_purchase(command: RecordPurchase, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    check_business_time(ctx)
    if command.order_id in state.orders:
        raise Refusal(
            "ORDER_ALREADY_RECORDED",
            f"order {command.order_id} was already recorded for this member",
            {"order_id": command.order_id},
        )
    result = quote(command, state, ctx)
    pv = ctx.version
    lot = None
    if result.points > 0:
        lot = ev.NewLot(
            lot_id=f"P-{command.order_id}",
            source="purchase",
            points=result.points,
            active_at=result.active_at,
            expires_at=result.expires_at,
            order_id=command.order_id,
        )
    out: list[ev.MemberEvent] = [
        ev.PurchaseRecorded(
            at=ctx.at,
            order_id=command.order_id,
            lines=tuple(
                ev.EarnedLine(
                    line_id=ln.line_id,
                    sku=src.sku,
                    category=src.category,
                    quantity=src.quantity,
                    paid_fen=ln.paid_fen,
                    rate=str(ln.rate),
                    base_points=ln.base_points,
                    bonus_points=ln.bonus_points,
                    points=ln.points,
                )
                for ln, src in zip(result.lines, command.lines, strict=True)
            ),
            order_total_fen=command.order_total_fen,
            points_paid=command.points_paid,
            tier=effective_tier(state, pv.policy, ctx.at),
            multiplier=str(result.multiplier),
            multiplier_rule=result.multiplier_rule,
            candidates=tuple(ev.Candidate(rule=r, factor=str(f)) for r, f in result.candidates),
            points=result.points,
            growth=result.growth,
            lot=lot,
            policy_version=pv.version,
        )
    ]
    if lot is not None and lot.active_at <= ctx.now:
        # A late sale past its return window: the lot is active as soon as it is recorded.
        out.append(
            ev.LotActivated(
                at=lot.active_at, lot_id=lot.lot_id, points=lot.points, arrears_repaid=repaid(state.arrears, lot.points)
            )
        )
    out += tiers.upgrade(state, ctx, growth=result.growth, purchase_at=ctx.at)
    return out


def _validate_lines(command: RecordPurchase) -> None:
    if not command.lines:
        raise InvalidCommand("lines", "an order needs at least one line")
    seen: set[str] = set()
    for i, line in enumerate(command.lines):
        if line.line_id in seen:
            raise InvalidCommand(f"lines[{i}].line_id", f"duplicate line id {line.line_id!r}")
        seen.add(line.line_id)
        if line.quantity < 1:
            raise InvalidCommand(f"lines[{i}].quantity", "must be at least 1")
        if line.paid_fen < 0:
            raise InvalidCommand(f"lines[{i}].paid_fen", "must not be negative")
    if command.points_paid < 0:
        raise InvalidCommand("points_paid", "must not be negative")


def award_points(command: AwardPoints, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    check_business_time(ctx)
    pv = ctx.version
    policy = pv.policy
    rule = policy.behaviours.get(command.behaviour)
    if rule is None:
        known = ", ".join(sorted(policy.behaviours))
        raise InvalidCommand("behaviour", f"unknown behaviour {command.behaviour!r}; known: {known}")
    day = local_day_start(policy, ctx.at)
    month = local_month_start(policy, ctx.at)
    next_day = local_day_start(policy, day + timedelta(hours=25))
    next_month = local_month_start(policy, month + timedelta(days=32))
    used_today = state.behaviour_count(rule.cap_group, day, next_day)
    used_month = state.behaviour_count(rule.cap_group, month, next_month)
    try:
        award = behaviour_award(policy, command.behaviour, used_today, used_month)
    except UnknownBehaviour as exc:  # pragma: no cover - guarded above
        raise InvalidCommand("behaviour", str(exc)) from exc
    if isinstance(award, CapReached):
        raise Refusal(
            "BEHAVIOUR_CAP_REACHED",
            f"{command.behaviour}: at most {award.limit} a {award.period} in cap group {award.cap_group}",
            {"cap_group": award.cap_group, "period": award.period, "limit": award.limit, "used": award.used},
        )
    lot = None
    if award.points > 0:
        lot = ev.NewLot(
            lot_id=next_id(state, "B"),
            source="behaviour",
            points=award.points,
            active_at=ctx.at,
            expires_at=lot_expiry(policy, ctx.at),
        )
    out: list[ev.MemberEvent] = [
        ev.PointsAwarded(
            at=ctx.at,
            behaviour=command.behaviour,
            reference=command.reference,
            cap_group=award.cap_group,
            points=award.points,
            growth=award.growth,
            counts_as_referral=award.counts_as_referral,
            lot=lot,
            arrears_repaid=repaid(state.arrears, award.points),
            policy_version=pv.version,
        )
    ]
    if award.coupon is not None:
        out.append(
            benefits.grant(state, award.coupon, ctx.at, ctx, source=f"behaviour:{command.behaviour}:{command.reference}")
        )
    out += tiers.upgrade(state, ctx, growth=award.growth, referral=award.counts_as_referral)
    return out

