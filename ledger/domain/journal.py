"""The revenue-recognition journal of a period: the entries the points liability's movements book (pure).

A period is ``[start, end)`` in business time. The liability at a bound D is the liability as of the instant
before D (so the liability at ``end`` closes the period and opens the next one). Every event that counts in
the period (its counted time, as :mod:`ledger.domain.as_of` defines it, at or after ``start`` and before
``end``) gives one line per movement category it makes (:func:`ledger.domain.liability.movement`), so the
lines of a period add up exactly to the change of the liability between its bounds.

Amounts are ``points * point_value_fen``: the point value is an integer number of fen, so every amount is exact
and no rounding is needed; a total in fen is the sum of its lines' amounts (equal to its points times the value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from ledger.domain import events as ev
from ledger.domain.as_of import Recorded, fold_as_of
from ledger.domain.liability import CATEGORIES, SIGN, Liability, Tally, movement
from ledger.domain.state import MemberState
from policies import PolicyHistory

INSTANT = timedelta(microseconds=1)

LIABILITY = "contract_liability_points"
ACCOUNTS: Mapping[str, tuple[str, str]] = {
    "issued": ("points_issued_clearing", LIABILITY),
    "redeemed": (LIABILITY, "revenue_points_redeemed"),
    "expired": (LIABILITY, "revenue_breakage"),
    "clawed_back": (LIABILITY, "points_issued_clearing"),
    "returned": ("revenue_points_redeemed", LIABILITY),
    "adjusted_in": ("points_adjustment_expense", LIABILITY),
    "adjusted_out": (LIABILITY, "points_adjustment_expense"),
    "applied_to_arrears": (LIABILITY, "points_arrears_receivable"),
    "merged_in": ("member_merge_clearing", LIABILITY),
    "merged_out": (LIABILITY, "member_merge_clearing"),
    "imported": ("opening_balance_clearing", LIABILITY),
    "transferred_in": ("member_transfer_clearing", LIABILITY),
    "transferred_out": (LIABILITY, "member_transfer_clearing"),
}
"""The (debit, credit) accounts of each entry kind; a kind that raises the liability credits it."""


@dataclass(frozen=True, slots=True)
class MemberLog:
    """One member's stored events, as the fold needs them, with where each sits in the log."""

    member_id: str
    recorded: Sequence[Recorded]
    where: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """``event_id`` to ``(stream version, global position)``."""


@dataclass(frozen=True, slots=True)
class Line:
    at: datetime
    """The counted business time of the event."""
    member_id: str
    event_id: str
    """Empty for time-driven work due in the period that the log has not recorded yet (an expiry, say)."""
    event_type: str
    stream_version: int | None
    position: int | None
    kind: str
    points: int
    amount_fen: int

    @property
    def debit(self) -> str:
        return ACCOUNTS[self.kind][0]

    @property
    def credit(self) -> str:
        return ACCOUNTS[self.kind][1]


@dataclass(slots=True)
class Journal:
    program_id: str
    start: datetime
    end: datetime
    as_known_at: datetime
    point_value_fen: int
    opening: Liability = field(default_factory=Liability)
    closing: Liability = field(default_factory=Liability)
    lines: list[Line] = field(default_factory=list)

    def totals(self) -> dict[str, tuple[int, int]]:
        """``kind -> (points, amount_fen)`` for every kind, from the lines."""
        out = {kind: (0, 0) for kind in CATEGORIES}
        for line in self.lines:
            points, fen = out[line.kind]
            out[line.kind] = (points + line.points, fen + line.amount_fen)
        return out

    def net(self) -> tuple[int, int]:
        """What the lines move of the liability, ``(points, fen)``."""
        totals = self.totals()
        return (
            sum(SIGN[k] * p for k, (p, _) in totals.items()),
            sum(SIGN[k] * f for k, (_, f) in totals.items()),
        )


def _tally_with_moves(
    tally: Tally, moves: list[dict[str, int]]
) -> Callable[[MemberState, ev.MemberEvent], None]:
    def observe(state: MemberState, event: ev.MemberEvent) -> None:
        tally.observe(state, event)
        moves.append(movement(state, event))

    return observe


def program_journal(
    program_id: str,
    members: Iterable[MemberLog],
    policies: PolicyHistory,
    start: datetime,
    end: datetime,
    as_known_at: datetime,
    point_value_fen: int,
    tz: tzinfo,
) -> Journal:
    """The journal of ``[start, end)`` of the given members, as known at ``as_known_at``, with the liability at
    both bounds (members not enrolled by a bound count nothing there)."""
    if end < start:
        raise ValueError("the period ends before it starts")
    journal = Journal(program_id, start, end, as_known_at, point_value_fen)
    for log in members:
        opening = Tally()
        folded = fold_as_of(program_id, log.member_id, log.recorded, start - INSTANT, as_known_at, policies,
                            observe=opening.observe)  # fmt: skip
        if folded.state.enrolled:
            journal.opening.add_member(
                folded.state, opening.moved, opening.expired_by_lot, start - INSTANT, tz
            )
        closing = Tally()
        moves: list[dict[str, int]] = []
        observe = _tally_with_moves(closing, moves)
        folded = fold_as_of(program_id, log.member_id, log.recorded, end - INSTANT, as_known_at, policies,
                            observe=observe)  # fmt: skip
        if not folded.state.enrolled:
            continue
        journal.closing.add_member(folded.state, closing.moved, closing.expired_by_lot, end - INSTANT, tz)
        for counted, moved in zip(folded.events, moves, strict=True):
            if counted.counted_at < start:
                continue
            version, position = log.where.get(counted.event_id, (None, None))
            for kind in CATEGORIES:
                if moved.get(kind):
                    journal.lines.append(Line(
                        counted.counted_at, log.member_id, counted.event_id, counted.event.type, version, position,
                        kind, moved[kind], moved[kind] * point_value_fen,
                    ))  # fmt: skip
    journal.lines.sort(key=lambda line: (line.at, line.member_id, line.stream_version or 0))
    return journal


COLUMNS = (
    "record", "date", "at", "member_id", "event_id", "event_type", "stream_version", "position", "kind", "points",
    "amount_fen", "debit", "credit",
)  # fmt: skip
"""The columns of the journal's records (CSV header, JSON keys)."""


def records(journal: Journal, tz: tzinfo) -> list[dict[str, str | int | None]]:
    """The journal as records: one ``line`` per entry (``date`` is its business date in ``tz``), then one
    ``total`` per kind, then the liability ``opening`` and ``closing`` (points and fen, at the period's bounds)."""
    out: list[dict[str, str | int | None]] = []
    empty = dict.fromkeys(COLUMNS)
    for line in journal.lines:
        out.append({
            "record": "line", "date": line.at.astimezone(tz).date().isoformat(), "at": line.at.isoformat(),
            "member_id": line.member_id, "event_id": line.event_id or None, "event_type": line.event_type,
            "stream_version": line.stream_version, "position": line.position, "kind": line.kind,
            "points": line.points, "amount_fen": line.amount_fen, "debit": line.debit, "credit": line.credit,
        })  # fmt: skip
    for kind, (points, fen) in journal.totals().items():
        debit, credit = ACCOUNTS[kind]
        out.append({**empty, "record": "total", "kind": kind, "points": points, "amount_fen": fen,
                    "debit": debit, "credit": credit})  # fmt: skip
    for record, liability, at in (
        ("opening", journal.opening, journal.start),
        ("closing", journal.closing, journal.end),
    ):
        points = liability.total
        out.append({**empty, "record": record, "at": at.isoformat(), "kind": "liability", "points": points,
                    "amount_fen": points * journal.point_value_fen, "credit": LIABILITY})  # fmt: skip
    return out
