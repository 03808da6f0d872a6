"""Manual adjustments by an operator, always with a reason code, a note and the operator's id."""

from __future__ import annotations

from ledger.domain import events as ev
from ledger.domain.commands import AdjustPoints
from ledger.domain.decide.context import Context, next_id
from ledger.domain.decide.lots import repaid, spendable_lots, take
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.state import MemberState
from policies import lot_expiry


def adjust(command: AdjustPoints, state: MemberState, ctx: Context) -> list[ev.MemberEvent]:
    for name in ("reason_code", "note", "operator_id"):
        if not getattr(command, name).strip():
            raise InvalidCommand(name if name != "operator_id" else "context.operator_id", "is required for an adjustment")
    if command.points == 0:
        raise InvalidCommand("points", "must not be zero")
    pv = ctx.policy_at(ctx.now)
    lot = None
    debits: list[ev.LotDebit] = []
    arrears_added = 0
    if command.points > 0:
        lot = ev.NewLot(
            lot_id=next_id(state, "A"),
            source="adjustment",
            points=command.points,
            active_at=ctx.now,
            expires_at=lot_expiry(pv.policy, ctx.now),
        )
    else:
        debits, missing = take(spendable_lots(state), -command.points)
        if missing and command.allow_arrears and pv.policy.refunds.clawback == "arrears":
            # The program lets a balance go negative (arrears, repaid first by later earning).
            arrears_added = missing
        elif missing:
            raise Refusal(
                "INSUFFICIENT_POINTS",
                f"cannot remove {-command.points} points; {-command.points - missing} available",
                {"requested": -command.points, "available": -command.points - missing},
            )
    return [
        ev.PointsAdjusted(
            at=ctx.now,
            points=command.points,
            reason_code=command.reason_code,
            note=command.note,
            operator_id=command.operator_id,
            lot=lot,
            debits=tuple(debits),
            arrears_added=arrears_added,
            arrears_repaid=repaid(state.arrears, command.points),
            policy_version=pv.version,
        )
    ]
