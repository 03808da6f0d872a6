"""Taking points from lots and repaying arrears: the arithmetic every debit shares."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ledger.domain.events import LotDebit
from ledger.domain.state import Lot, MemberState


def take(lots: Iterable[Lot], points: int, capacity: dict[str, int] | None = None) -> tuple[list[LotDebit], int]:
    """Take up to ``points`` from ``lots`` in the order given; return the debits and what is still missing.

    ``capacity`` overrides how much each lot may give (default: its unreserved active points).
    """
    debits: list[LotDebit] = []
    missing = points
    for lot in lots:
        if missing <= 0:
            break
        can = capacity[lot.lot_id] if capacity is not None else lot.spendable
        n = min(can, missing)
        if n > 0:
            debits.append(LotDebit(lot_id=lot.lot_id, points=n))
            missing -= n
    return debits, missing


def spendable_lots(state: MemberState, *, not_expiring_before: datetime | None = None) -> list[Lot]:
    """Active lots with unreserved points, soonest expiry first (optionally only lots that outlive a time)."""
    lots = state.spendable_lots()
    if not_expiring_before is not None:
        lots = [lot for lot in lots if lot.expires_at > not_expiring_before]
    return lots


def repaid(arrears: int, points: int) -> int:
    """Arrears are repaid first from points as they become active."""
    return min(arrears, points) if points > 0 else 0
