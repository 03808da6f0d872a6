"""Time-driven lot work: pending points become active (repaying arrears first), active points expire."""

from __future__ import annotations

from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.decide.context import Context
from ledger.domain.decide.lots import repaid
from ledger.domain.state import MemberState


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    moments = [
        lot.active_at if not lot.activated else lot.expires_at
        for lot in state.lots.values()
        if not lot.expired and (not lot.activated or lot.remaining > 0)
    ]
    return min(moments, default=None)


def run_due(state: MemberState, at: datetime, ctx: Context) -> list[ev.MemberEvent]:
    out: list[ev.MemberEvent] = []
    arrears = state.arrears
    for lot in sorted(state.lots.values(), key=lambda lot: lot.order_key()):
        if lot.expired:
            continue
        if not lot.activated and lot.active_at <= at:
            pay = repaid(arrears, lot.remaining)
            arrears -= pay
            out.append(ev.LotActivated(at=lot.active_at, lot_id=lot.lot_id, points=lot.remaining, arrears_repaid=pay))
        elif lot.activated and lot.remaining > 0 and lot.expires_at <= at:
            out.append(ev.LotExpired(at=lot.expires_at, lot_id=lot.lot_id, points=lot.remaining))
    return out
