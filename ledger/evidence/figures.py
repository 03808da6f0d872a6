"""The figures a bundle records and its verifier recomputes: balances, the liability at the bounds, the journal.

Both sides build them with these functions from the same domain folds, so the bundle's files and the
verifier's recomputation are compared as equal documents.
"""

from __future__ import annotations

from typing import Any

from ledger.domain.journal import Journal
from ledger.domain.liability import Liability
from ledger.domain.state import MemberState


def balance(state: MemberState) -> dict[str, int]:
    """A member's balance: pending, active (held included), held, available and arrears, and the stream version."""
    return {
        "pending": state.pending, "active": state.active, "held": state.held, "available": state.available,
        "arrears": state.arrears, "version": state.version,
    }  # fmt: skip


def _liability(liability: Liability, value: int) -> dict[str, Any]:
    return {
        "members": liability.members, "pending": liability.pending, "active": liability.active,
        "held": liability.held, "total": liability.total, "total_fen": liability.total * value,
        "arrears": liability.arrears,
    }  # fmt: skip


def liability_document(journal: Journal) -> dict[str, Any]:
    """The liability at the period's bounds (as of the instant before each) and the journal's totals by kind."""
    value = journal.point_value_fen
    points, fen = journal.net()
    return {
        "program_id": journal.program_id,
        "from": journal.start.isoformat(),
        "to": journal.end.isoformat(),
        "as_known_at": journal.as_known_at.isoformat(),
        "point_value_fen": value,
        "opening": _liability(journal.opening, value),
        "closing": _liability(journal.closing, value),
        "journal_totals": {k: {"points": p, "amount_fen": f} for k, (p, f) in journal.totals().items()},
        "journal_net": {"points": points, "amount_fen": fen},
        "journal_lines": len(journal.lines),
    }
