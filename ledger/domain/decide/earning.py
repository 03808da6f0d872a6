"""Earning: purchases and behaviours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from ledger.domain import events as ev
from ledger.domain.commands import AwardPoints, RecordPurchase
from ledger.domain.decide import benefits, tiers
from ledger.domain.decide.context import Context, check_business_time, effective_tier, next_id
from ledger.domain.decide.lots import repaid
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import MemberState
from policies import (
    CapReached,
    EarningContext,
    OrderEarning,
    Policy,
    UnknownBehaviour,
    behaviour_award,
    earn_order,
    local_day_start,
    local_month_start,
    lot_expiry,
    reference_required,
)

CapPeriod = Literal["DAY", "MONTH"]
"""The period of a behaviour cap, named as the API names it (``CAP_PERIOD_DAY``, metadata ``period``)."""

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CapUsage:
    """One cap of a cap group at a moment: the awards ``used`` of ``limit`` in the local period that resets
    at ``resets_at`` (the start of the next local day or month in the program's time zone)."""

    period: CapPeriod
    limit: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


def _period_bounds(policy: Policy, at: datetime, period: CapPeriod) -> tuple[datetime, datetime]:
    """The local day or month containing ``at``, as a half-open interval."""
    if period == "DAY":
        day = local_day_start(policy, at)
        return day, local_day_start(policy, day + timedelta(hours=25))
    month = local_month_start(policy, at)
    return month, local_month_start(policy, month + timedelta(days=32))


def cap_usage(state: MemberState, policy: Policy, cap_group: str, at: datetime, *, through: bool = False) -> list[CapUsage]:
    """The caps of ``cap_group`` in the periods containing ``at``, day first. ``through``: count the awards
    up to and including ``at`` (an award at ``at`` sees itself), else every award in the period."""
    group = policy.cap_groups.get(cap_group)
    if group is None:
        return []
    out: list[CapUsage] = []
    limits: tuple[tuple[CapPeriod, int | None], ...] = (("DAY", group.per_day), ("MONTH", group.per_month))
    for period, limit in limits:
        if limit is None:
            continue
        start, end = _period_bounds(policy, at, period)
        used = state.behaviour_count(cap_group, start, at + _TICK if through else end)
        out.append(CapUsage(period=period, limit=limit, used=used, resets_at=end))
    return out


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
    recorded = state.orders.get(command.order_id)
    if recorded is not None:
        raise Refusal(
            "ORDER_ALREADY_RECORDED",
            f"order {command.order_id} was already recorded for this member",
            {
                "order_id": command.order_id,
                "points_earned": sum(line.earned for line in recorded.lines.values()),
                "lot_id": recorded.lot_id or "",
            },
        )
    points_paid = _points_paid(command, state)
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
            points_paid=points_paid,
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


def _points_paid(command: RecordPurchase, state: MemberState) -> int:
    """The points that paid part of the sale: those the named hold committed for this order (``points_paid``, if
    given as well, must equal them), else ``points_paid`` as given."""
    if not command.hold_id:
        return command.points_paid
    committed = state.committed_holds.get(command.hold_id)
    if committed is None:
        if command.hold_id in state.holds or command.hold_id in state.closed_holds:
            status = "OPEN" if command.hold_id in state.holds else state.closed_holds[command.hold_id].upper()
            raise Refusal(
                "HOLD_NOT_COMMITTED",
                f"hold {command.hold_id} has not paid anything (it is {status.lower()}): commit it first",
                {"hold_id": command.hold_id, "status": status},
            )
        raise NotFound("hold", command.hold_id)
    order_id, points = committed
    if order_id != command.order_id:
        raise InvalidCommand("hold_id", f"hold {command.hold_id} was committed for order {order_id}, not {command.order_id}")
    if command.points_paid and command.points_paid != points:
        raise InvalidCommand("points_paid", f"must equal the {points} points hold {command.hold_id} committed (or be 0)")
    return points


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


def names_an_invitee(command: AwardPoints, ctx: Context) -> bool:
    """Whether the award is a referral, whose reference names the invitee (``ctx.invitee`` must be looked up).
    Without a policy in force at its business time it is not: ``decide`` then refuses it in its own order."""
    try:
        policy = ctx.version.policy
    except Refusal:
        return False
    rule = policy.behaviours.get(command.behaviour)
    return rule is not None and rule.counts_as_referral and bool(command.reference)


def _check_referral(command: AwardPoints, state: MemberState, ctx: Context) -> None:
    """A referral is awarded when the invitee (the member its reference names, not the inviter) has made a
    purchase: REFERRAL_NOT_QUALIFIED otherwise."""
    invitee = ctx.invitee
    qualified = (
        invitee is not None
        and invitee.member_id == command.reference
        and invitee.member_id != state.member_id
        and invitee.enrolled
        and any(order.occurred_at <= ctx.at for order in invitee.orders.values())
    )
    if not qualified:
        raise Refusal(
            "REFERRAL_NOT_QUALIFIED",
            f"{command.reference!r} is not a member of this program with a recorded purchase",
            {"reference": command.reference},
        )


def award_points(command: AwardPoints, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    check_business_time(ctx)
    pv = ctx.version
    policy = pv.policy
    rule = policy.behaviours.get(command.behaviour)
    if rule is None:
        known = ", ".join(sorted(policy.behaviours))
        raise InvalidCommand("behaviour", f"unknown behaviour {command.behaviour!r}; known: {known}")
    if not command.reference and reference_required(policy, command.behaviour):
        raise InvalidCommand(
            "reference", f"is required for {command.behaviour}: the id of what is rewarded, so it is awarded once"
        )
    if command.reference and (command.behaviour, command.reference) in state.awarded_references:
        raise Refusal(
            "REFERENCE_ALREADY_AWARDED",
            f"{command.behaviour} was already awarded for {command.reference!r}",
            {"behaviour": command.behaviour, "reference": command.reference},
        )
    if rule.counts_as_referral:
        _check_referral(command, state, ctx)
    periods: tuple[CapPeriod, ...] = ("DAY", "MONTH")
    used = {p: state.behaviour_count(rule.cap_group, *_period_bounds(policy, ctx.at, p)) for p in periods}
    try:
        award = behaviour_award(policy, command.behaviour, used["DAY"], used["MONTH"])
    except UnknownBehaviour as exc:  # pragma: no cover - guarded above
        raise InvalidCommand("behaviour", str(exc)) from exc
    if isinstance(award, CapReached):
        period: CapPeriod = "DAY" if award.period == "day" else "MONTH"
        _, resets_at = _period_bounds(policy, ctx.at, period)
        raise Refusal(
            "BEHAVIOUR_CAP_REACHED",
            f"{command.behaviour}: at most {award.limit} a {award.period} in cap group {award.cap_group}",
            {
                "behaviour": command.behaviour,
                "cap_group": award.cap_group,
                "period": period,
                "limit": award.limit,
                "used": award.used,
                "resets_at": resets_at,
            },
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

