"""The points liability of a program as of a date, valued in money, with breakage and the period's movements.

Every member's stream is folded as of the date (see :mod:`ledger.application.as_of`); nothing is read from the
read models, so the figures for a past date are the log's, as known at the recording time asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ledger.application.as_of import Times, fold_member, program_members, recorded_events, resolve_times
from ledger.application.service import LedgerApp
from ledger.domain.errors import InvalidCommand
from ledger.domain.liability import CATEGORIES, Liability, Tally
from policies import NoPolicyInForce, Policy


@dataclass(frozen=True, slots=True)
class LiabilityReport:
    program_id: str
    as_of: datetime
    as_known_at: datetime
    point_value_fen: int
    """Of the policy in force at ``as_of``: every amount of the report is valued at it."""
    closing: Liability
    since: datetime | None = None
    opening: Liability | None = None
    """The liability at ``since`` (as known at ``as_known_at``), when a period was asked for."""

    def fen(self, points: int) -> int:
        return points * self.point_value_fen

    def period(self) -> dict[str, int]:
        """The movements between ``since`` and ``as_of`` by category (empty without ``since``)."""
        if self.opening is None:
            return {}
        start, end = self.opening.movements, self.closing.movements
        return {c: end.get(c, 0) - start.get(c, 0) for c in sorted(set(start) | set(end))}


def policy_at(app: LedgerApp, program_id: str, at: datetime) -> Policy:
    """The policy in force at ``at`` (the first version for a time before it)."""
    policies = app.program(program_id).policies
    try:
        return policies.in_force_at(at).policy
    except NoPolicyInForce:
        return policies.versions[0].policy


def program_liability(
    app: LedgerApp,
    program_id: str,
    as_of: datetime | None,
    as_known_at: datetime | None = None,
    since: datetime | None = None,
) -> LiabilityReport:
    """The program's liability as of ``as_of`` as known at ``as_known_at`` (defaults as for a member), and with
    ``since`` the liability then and the movements between."""
    app.program(program_id)
    times = resolve_times(app, program_id, as_of, as_known_at)
    if since is not None and since > times.as_of:
        raise InvalidCommand("since", "is after as_of")
    policy = policy_at(app, program_id, times.as_of)
    tz = ZoneInfo(policy.timezone)
    closing = Liability()
    opening = Liability() if since is not None else None
    for member_id in program_members(app, program_id):
        recorded = recorded_events(app, program_id, member_id)
        for liability, at in ((closing, times.as_of), (opening, since)):
            if liability is None or at is None:
                continue
            tally = Tally()
            folded = fold_member(app, program_id, member_id, Times(at, times.as_known_at), recorded, tally.observe)
            if folded.state.enrolled:
                liability.add_member(folded.state, tally.moved, tally.expired_by_lot, at, tz)
    return LiabilityReport(
        program_id, times.as_of, times.as_known_at, policy.redemption.point_value_fen, closing, since, opening
    )


def report_lines(report: LiabilityReport) -> list[tuple[str, str, int, int]]:
    """The report as ``(section, name, points, value_fen)`` lines, in the order a CSV shows them."""
    closing = report.closing
    fen = report.fen
    lines = [("outstanding", s, p, fen(p)) for s, p in (
        ("pending", closing.pending), ("active", closing.active), ("held", closing.held), ("total", closing.total))]  # fmt: skip
    lines += [("expiry_month", month, p, fen(p)) for month, p in sorted(closing.by_month.items())]
    lines.append(("arrears", "owed_by_members", closing.arrears, fen(closing.arrears)))
    ratio = closing.breakage
    lines.append(("breakage", "settled_points_credited", closing.settled_credited, fen(closing.settled_credited)))
    lines.append(("breakage", "settled_points_expired", closing.settled_expired, fen(closing.settled_expired)))
    expected = closing.total * ratio.numerator // ratio.denominator
    lines.append(("breakage", "expected_on_outstanding", expected, fen(expected)))
    if report.opening is not None:
        lines.append(("movement", "opening", report.opening.total, fen(report.opening.total)))
        period = report.period()
        lines += [("movement", c, period.get(c, 0), fen(period.get(c, 0))) for c in CATEGORIES]
        lines.append(("movement", "closing", closing.total, fen(closing.total)))
    return lines


def report_document(report: LiabilityReport) -> dict[str, Any]:
    """The report as a JSON-ready document (integers; the breakage as an exact ratio string and basis points)."""
    ratio = report.closing.breakage
    return {
        "program_id": report.program_id,
        "as_of": report.as_of.isoformat(),
        "as_known_at": report.as_known_at.isoformat(),
        "since": report.since.isoformat() if report.since else None,
        "point_value_fen": report.point_value_fen,
        "members": report.closing.members,
        "breakage_ratio": f"{ratio.numerator}/{ratio.denominator}",
        "breakage_basis_points": ratio.numerator * 10_000 // ratio.denominator,
        "lines": [{"section": s, "name": n, "points": p, "value_fen": f} for s, n, p, f in report_lines(report)],
    }
