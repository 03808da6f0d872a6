"""The lot arithmetic every fold step shares: crediting a lot, debiting lots, giving points back, and the
active and pending totals they move; and :class:`InvariantBroken`, raised when the log contradicts itself."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ledger.domain import events as ev
from ledger.domain.state import Lot, MemberState


class InvariantBroken(AssertionError):
    """The log contradicts itself; the member must not be served from this state."""


# The invariant checks below are written as ``if <broken>: raise InvariantBroken(...)`` so that the message is
# only formatted when a check fails: they run for every event applied, and stay on in production.


def share(lot: Lot) -> tuple[int, int]:
    """What a lot adds to the member's (active, pending) totals."""
    if lot.expired:
        return 0, 0
    return (lot.remaining, 0) if lot.activated else (0, lot.remaining)


def account(state: MemberState, lot: Lot, before: tuple[int, int]) -> None:
    after = share(lot)
    state.active_total += after[0] - before[0]
    state.pending_total += after[1] - before[1]


def add_lot(state: MemberState, new: ev.NewLot, at_: datetime, occurred_at: datetime, repaid: int = 0) -> Lot:
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
    lot = Lot(
        new.lot_id, new.source, points, remaining, occurred_at, active_at, new.expires_at, seq, new.order_id
    )
    lot.activated = activated
    state.lots[lot.lot_id] = lot
    # What ``account(state, lot, (0, 0))`` adds for a lot that is not expired.
    if activated:
        state.active_total += remaining
    else:
        state.pending_total += remaining
    if repaid:
        state.arrears -= repaid
    if state.arrears < 0:
        raise InvariantBroken("arrears below zero")
    return lot


def debit(state: MemberState, debits: Iterable[ev.LotDebit], *, from_held: bool = False) -> int:
    total = 0
    for d in debits:
        lot = state.lots.get(d.lot_id)
        if lot is None:
            raise InvariantBroken(f"debit from unknown lot {d.lot_id}")
        assert lot is not None
        if d.points <= 0:
            raise InvariantBroken("debit of zero or fewer points")
        before = share(lot)
        if from_held:
            lot.held -= d.points
        lot.remaining -= d.points
        account(state, lot, before)
        if lot.remaining < 0:
            raise InvariantBroken(f"lot {lot.lot_id} below zero")
        if not 0 <= lot.held <= lot.remaining:
            raise InvariantBroken(f"lot {lot.lot_id} holds more than it has")
        total += d.points
    return total


def release_allocations(s: MemberState, allocations: dict[str, int]) -> None:
    for lot_id, points in allocations.items():
        if points:
            lot = s.lots[lot_id]
            lot.held -= points
            if not (lot.held >= 0):
                raise InvariantBroken(f"lot {lot_id} released more than held")


def return_points(s: MemberState, e: ev.PurchaseRefunded | ev.ExchangeCancelled, what: str) -> None:
    """Points given back (by a refund of a points-paid order, or a cancelled exchange): into the lots they came
    from (``returned``), and as a new lot (``relot``) for the part whose lot had expired, which repays arrears first."""
    for r in e.returned:
        lot = s.lots[r.lot_id]
        before = share(lot)
        lot.remaining += r.points
        account(s, lot, before)
        if not (lot.remaining <= lot.amount):
            raise InvariantBroken(f"lot {r.lot_id} refilled beyond its amount")
    if e.relot is not None:
        add_lot(s, e.relot, e.at, e.at, e.arrears_repaid)
    elif e.arrears_repaid:
        raise InvariantBroken(f"{what} repays arrears only from the points it returns as a new lot")
    if sum(r.points for r in e.returned) + (e.relot.points if e.relot else 0) != e.points_returned:
        raise InvariantBroken("returned points do not add up")
    s.lifetime_returned += e.points_returned
