"""Refunds: take back what the refunded part earned, give back the points that paid for it.

Take-back per line is ``ceil(earned * refunded_so_far / paid) - taken_back_so_far`` so partial refunds add up
to exactly what a full refund takes. Order: what remains of the sale's own lot (pending or active), then other
active lots soonest-expiring first, then the program's clawback policy (arrears, or capped at the balance).
Points that paid for the order come back first, into the lots they came from (latest-expiring first); a part
whose lot has expired meanwhile comes back as a new lot expiring ``relot_days`` after the refund. That new lot
is active at once, so it repays arrears first and the take-back may take from it like any other active lot.
An order paid only with points (no money) is refunded whole: all its points come back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.commands import RefundLine, RefundPurchase
from ledger.domain.decide.context import Context, check_business_time, next_id
from ledger.domain.decide.lots import repaid, take
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.state import Lot, MemberState, OrderRecord
from policies import redeemed_return, refund_takeback, relot_expiry


def _requested_lines(command: RefundPurchase, order: OrderRecord, points_to_return: bool) -> list[RefundLine]:
    """The lines a refund covers. ``points_to_return``: points that paid for the order have not all come back
    (an order paid only with points has nothing left in money but is refunded whole once)."""
    if not command.lines:
        lines = [
            RefundLine(line_id, rec.paid_fen - rec.refunded_fen)
            for line_id, rec in order.lines.items()
            if rec.paid_fen > rec.refunded_fen
        ]
        if not lines and order.paid_fen == 0 and points_to_return:
            lines = [RefundLine(line_id, 0) for line_id in order.lines]
        if not lines:
            raise Refusal(
                "REFUND_EXCEEDS_LINE",
                f"order {order.order_id} is already fully refunded",
                {"order_id": order.order_id, "paid_fen": order.paid_fen, "refunded_fen": order.refunded_fen},
            )
        return lines
    seen: set[str] = set()
    for i, line in enumerate(command.lines):
        rec = order.lines.get(line.line_id)
        if rec is None:
            raise NotFound("order line", f"{order.order_id}/{line.line_id}")
        if line.line_id in seen:
            raise InvalidCommand(f"lines[{i}].line_id", f"line {line.line_id!r} named twice")
        seen.add(line.line_id)
        if line.refunded_fen <= 0:
            raise InvalidCommand(f"lines[{i}].refunded_fen", "must be positive")
        if rec.refunded_fen + line.refunded_fen > rec.paid_fen:
            raise Refusal(
                "REFUND_EXCEEDS_LINE",
                f"line {line.line_id} paid {rec.paid_fen} fen, {rec.refunded_fen} already refunded",
                {
                    "order_id": order.order_id,
                    "line_id": line.line_id,
                    "paid_fen": rec.paid_fen,
                    "refunded_fen": rec.refunded_fen,
                    "requested_fen": line.refunded_fen,
                },
            )
    return list(command.lines)


def return_to_lots(
    state: MemberState, debits: Iterable[tuple[str, int]], points: int, already: int, now: datetime
) -> tuple[list[ev.LotDebit], list[ev.LotDebit]]:
    """Give ``points`` of what ``debits`` took back to the lots they came from, latest-expiring first, skipping
    the ``already`` returned by earlier returns the same way: ``(returned into their lots, parts whose lot has
    expired by ``now``)``; the caller credits the second as a new lot expiring ``relot_expiry`` after ``now``.
    Refunds of points-paid orders and cancelled points-mall exchanges share it."""
    capacity: dict[str, int] = {}
    for lot_id, n in debits:
        capacity[lot_id] = capacity.get(lot_id, 0) + n
    returned: list[ev.LotDebit] = []
    relot_sources: list[ev.LotDebit] = []
    sources = sorted((state.lots[lot_id] for lot_id in capacity), key=lambda lot: lot.order_key(), reverse=True)
    left = points
    for lot in sources:
        cap = capacity[lot.lot_id]
        skip = min(already, cap)
        already -= skip
        cap -= skip
        n = min(cap, left)
        if n <= 0:
            continue
        left -= n
        if lot.expired or lot.expires_at <= now:
            relot_sources.append(ev.LotDebit(lot_id=lot.lot_id, points=n))
        else:
            returned.append(ev.LotDebit(lot_id=lot.lot_id, points=n))
        if left == 0:
            break
    assert left == 0, "a return gives back at most what was taken"
    return returned, relot_sources


def refund(command: RefundPurchase, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    check_business_time(ctx)
    order = state.orders.get(command.order_id)
    if order is None:
        raise NotFound("order", command.order_id)
    if command.refund_id in order.refund_ids:
        raise Refusal("REFUND_EXISTS", f"refund {command.refund_id} was already applied", {"id": command.refund_id})
    redemption = state.redemptions.get(order.order_id)
    redeemed = redemption.points if redemption else 0
    lines = _requested_lines(command, order, redeemed > order.points_returned)
    pv = ctx.policy_at(ctx.now)
    policy = pv.policy

    refunded_lines: list[ev.RefundedLine] = []
    for line in lines:
        rec = order.lines[line.line_id]
        take_now = refund_takeback(rec.earned, rec.refunded_fen + line.refunded_fen, rec.paid_fen, rec.taken_back)
        refunded_lines.append(ev.RefundedLine(line_id=line.line_id, refunded_fen=line.refunded_fen, points_taken=take_now))
    refunded_fen = sum(ln.refunded_fen for ln in lines)
    refunded_so_far = order.refunded_fen + refunded_fen
    growth_taken = refund_takeback(order.growth, refunded_so_far, order.paid_fen, order.growth_taken)

    # 1. Points that paid for the order come back (into their own lots, latest-expiring first).
    to_return = redeemed_return(redeemed, refunded_so_far, order.paid_fen, order.points_returned) if redeemed else 0
    returned: list[ev.LotDebit] = []
    relot_sources: list[ev.LotDebit] = []
    refill: dict[str, int] = {}
    if to_return > 0 and redemption is not None:
        returned, relot_sources = return_to_lots(state, redemption.debits, to_return, order.points_returned, ctx.now)
        refill = {d.lot_id: d.points for d in returned}
    relot = None
    relot_lot: Lot | None = None
    relot_repaid = 0
    relot_points = sum(d.points for d in relot_sources)
    if relot_points:
        relot = ev.NewLot(
            lot_id=next_id(state, "R"),
            source="refund_return",
            points=relot_points,
            active_at=ctx.now,
            expires_at=relot_expiry(policy, ctx.now),
            order_id=order.order_id,
        )
        # Active at once: it repays arrears first, and what is left may be taken back like any active lot.
        relot_repaid = repaid(state.arrears, relot_points)
        relot_lot = Lot(
            relot.lot_id, relot.source, relot_points, relot_points - relot_repaid, ctx.now, ctx.now,
            relot.expires_at, state.lot_seq + 1, order.order_id, activated=True,
        )

    # 2. Take back what the refunded part earned.
    points_taken = sum(ln.points_taken for ln in refunded_lines)
    debits: list[ev.LotDebit] = []
    missing = points_taken
    own = state.lots.get(order.lot_id) if order.lot_id else None
    if own is not None and not own.expired and missing > 0:
        n = min(own.remaining - own.held, missing)
        if n > 0:
            debits.append(ev.LotDebit(lot_id=own.lot_id, points=n))
            missing -= n
    if missing > 0:
        others = sorted(
            [
                lot
                for lot in state.lots.values()
                if lot is not own and lot.activated and not lot.expired and lot.expires_at > ctx.now
            ]
            + ([relot_lot] if relot_lot is not None else []),
            key=Lot.order_key,
        )
        capacity2 = {lot.lot_id: lot.remaining - lot.held + refill.get(lot.lot_id, 0) for lot in others}
        more, missing = take(others, missing, capacity=capacity2)
        debits += more
    arrears_added = forgiven = 0
    if missing > 0:
        if policy.refunds.clawback == "arrears":
            arrears_added = missing
        else:
            forgiven = missing
    return [
        ev.PurchaseRefunded(
            at=ctx.at,
            order_id=order.order_id,
            refund_id=command.refund_id,
            lines=tuple(refunded_lines),
            refunded_fen=refunded_fen,
            points_taken=points_taken,
            debits=tuple(debits),
            arrears_added=arrears_added,
            forgiven=forgiven,
            growth_taken=growth_taken,
            points_returned=to_return,
            returned=tuple(returned),
            relot=relot,
            relot_sources=tuple(relot_sources),
            arrears_repaid=relot_repaid,
            clawback=policy.refunds.clawback,
            policy_version=pv.version,
        )
    ]
