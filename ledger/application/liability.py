"""The points liability of a program as of a date, valued in money, with breakage and the period's movements.

Every member's stream is folded as of the date (see :mod:`ledger.application.as_of`); nothing is read from the
read models, so the figures for a past date are the log's, as known at the recording time asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ledger.application.as_of import Times, fold_member, program_members, recorded_events, resolve_times
from ledger.application.service import LedgerApp
from ledger.domain.errors import InvalidCommand
from ledger.domain.liability import Liability, Tally
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


def _policy_at(app: LedgerApp, program_id: str, at: datetime) -> Policy:
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
    policy = _policy_at(app, program_id, times.as_of)
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
