"""The points liability of members: outstanding points by state and expiry month, their movements, breakage (pure).

Outstanding points are the points of lots not expired with points left: pending, active and not held, and held
(the three add up to what the members could still redeem). Every event moves them by the amounts it records;
:func:`movement` names those amounts by category, and the categories add up exactly to the change of the
outstanding points that ``evolve`` makes (the reconciliation in docs/finance.md rests on this).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from fractions import Fraction

from ledger.domain import events as ev
from ledger.domain.state import MemberState

CATEGORIES = (
    "issued", "redeemed", "expired", "clawed_back", "returned", "adjusted_in", "adjusted_out",
    "applied_to_arrears", "merged_in", "merged_out", "imported", "transferred_in", "transferred_out",
)  # fmt: skip
"""The movement categories, each an amount of points (never negative)."""

SIGN = {
    "issued": 1, "redeemed": -1, "expired": -1, "clawed_back": -1, "returned": 1, "adjusted_in": 1,
    "adjusted_out": -1, "applied_to_arrears": -1, "merged_in": 1, "merged_out": -1,
    "imported": 1, "transferred_in": 1, "transferred_out": -1,
}  # fmt: skip
"""How each category moves the outstanding points."""

CREDITED_SOURCES = frozenset({"purchase", "behaviour", "adjustment", "imported"})
"""Lot sources that issue points (a refund's returned lot and a merge's moved lots only re-credit them); an
opening lot brought over from the previous system counts as credited for breakage."""


def outstanding(state: MemberState) -> int:
    """The member's outstanding points: pending plus active (held points are part of active)."""
    return state.pending + state.active


def movement(state: MemberState, event: ev.MemberEvent) -> dict[str, int]:
    """What ``event`` moves of the outstanding points, by category, applied to ``state`` (before the event)."""
    out: dict[str, int] = {}

    def add(category: str, points: int) -> None:
        if points:
            out[category] = out.get(category, 0) + points

    if isinstance(event, ev.PurchaseRecorded):
        add("issued", event.lot.points if event.lot else 0)
    elif isinstance(event, ev.PointsAwarded):
        add("issued", event.lot.points if event.lot else 0)
        add("applied_to_arrears", event.arrears_repaid)
    elif isinstance(event, ev.HoldCommitted):
        add("redeemed", event.points)
    elif isinstance(event, ev.PurchaseRefunded):
        add("returned", sum(r.points for r in event.returned) + (event.relot.points if event.relot else 0))
        add("applied_to_arrears", event.arrears_repaid)
        add("clawed_back", sum(d.points for d in event.debits))
    elif isinstance(event, ev.PointsExchanged):
        add("redeemed", event.points)
    elif isinstance(event, ev.ExchangeCancelled):
        add("returned", event.points_returned)
        add("applied_to_arrears", event.arrears_repaid)
    elif isinstance(event, ev.PointsAdjusted):
        add("adjusted_in", event.lot.points if event.lot else 0)
        add("applied_to_arrears", event.arrears_repaid)
        add("adjusted_out", sum(d.points for d in event.debits))
    elif isinstance(event, ev.LotActivated):
        add("applied_to_arrears", event.arrears_repaid)
    elif isinstance(event, ev.LotExpired):
        add("expired", event.points)
    elif isinstance(event, ev.MemberMerged):
        add("merged_out", outstanding(state))
    elif isinstance(event, ev.MemberAbsorbed):
        add("merged_in", sum(t.points for t in event.lots))
    elif isinstance(event, ev.MemberImported):
        add("imported", sum(lot.points for lot in event.lots))
    elif isinstance(event, ev.PointsTransferredOut):
        add("transferred_out", event.points)
    elif isinstance(event, ev.PointsTransferredIn):
        add("transferred_in", event.points)
        add("applied_to_arrears", event.arrears_repaid)
    return out


def net(movements: dict[str, int]) -> int:
    """The change of outstanding points the movements make."""
    return sum(SIGN[c] * p for c, p in movements.items())


def expiry_month(expires_at: datetime, tz: tzinfo) -> str:
    """The month of a lot's last usable instant (expiry is an exclusive bound), ``YYYY-MM`` in ``tz``."""
    return (expires_at - timedelta(microseconds=1)).astimezone(tz).strftime("%Y-%m")


@dataclass(slots=True)
class Liability:
    """Outstanding points of one or many members at one moment, and the movements that led there."""

    pending: int = 0
    active: int = 0
    """Active and not held."""
    held: int = 0
    arrears: int = 0
    by_month: dict[str, int] = field(default_factory=dict)
    movements: dict[str, int] = field(default_factory=dict)
    """Every movement since the start of the log, by category."""
    settled_credited: int = 0
    settled_expired: int = 0
    members: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.active + self.held

    def add_member(
        self, state: MemberState, moved: dict[str, int], expired_by_lot: dict[str, int], at: datetime, tz: tzinfo
    ) -> None:
        """Count one member's state at ``at``: its lots, arrears, movements and settled lots."""
        self.members += 1
        self.arrears += state.arrears
        for category, points in moved.items():
            self.movements[category] = self.movements.get(category, 0) + points
        for lot in state.lots.values():
            if lot.source in CREDITED_SOURCES and lot.expires_at <= at:
                self.settled_credited += lot.amount
                self.settled_expired += expired_by_lot.get(lot.lot_id, 0)
            if lot.expired or lot.remaining <= 0:
                continue
            if lot.activated:
                self.held += lot.held
                self.active += lot.remaining - lot.held
            else:
                self.pending += lot.remaining
            month = expiry_month(lot.expires_at, tz)
            self.by_month[month] = self.by_month.get(month, 0) + lot.remaining

    @property
    def breakage(self) -> Fraction:
        """Expired over credited points of the settled lots (0 when none is settled)."""
        if not self.settled_credited:
            return Fraction(0)
        return Fraction(self.settled_expired, self.settled_credited)


@dataclass(slots=True)
class Tally:
    """The movements of a member's events as they are folded, and the points expired per lot."""

    moved: dict[str, int] = field(default_factory=dict)
    expired_by_lot: dict[str, int] = field(default_factory=dict)

    def observe(self, state: MemberState, event: ev.MemberEvent) -> None:
        """Count ``event``, about to be applied to ``state``."""
        for category, points in movement(state, event).items():
            self.moved[category] = self.moved.get(category, 0) + points
        if isinstance(event, ev.LotExpired):
            self.expired_by_lot[event.lot_id] = self.expired_by_lot.get(event.lot_id, 0) + event.points
