"""Members as of a business time, as known at a recording time: the log folded again, never the read models.

See :mod:`ledger.domain.as_of` for what counts; this module reads the stream, checks the two times against the
program's clock, and answers with a :class:`~ledger.application.service.MemberView` whose ``now`` is the as-of
time, so every member answer (balance, lots, tier state, entitlements) is built the same way as the live one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.application.service import LedgerApp, MemberView
from ledger.domain import events as ev
from ledger.domain.as_of import AsOf, Recorded, fold_as_of
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.domain.queries import lot_status
from ledger.domain.state import MemberState
from ledger.domain.streams import member_stream, member_streams_of
from policies import NoPolicyInForce
from projections.rows import LotRow, lot_row


@dataclass(frozen=True, slots=True)
class Times:
    """The two times of an as-of question, checked and with their defaults filled in."""

    as_of: datetime
    as_known_at: datetime


def resolve_times(app: LedgerApp, program_id: str, as_of: datetime | None, as_known_at: datetime | None) -> Times:
    """``as_known_at`` defaults to the program's now, ``as_of`` to ``as_known_at``; neither may be after now
    (the log does not know the future). Refused naming the field."""
    now = app.now(program_id)
    if as_known_at is not None and as_known_at > now:
        raise InvalidCommand("as_known_at", f"is after the program's clock ({now.isoformat()})")
    if as_of is not None and as_of > now:
        raise InvalidCommand("as_of", f"is after the program's clock ({now.isoformat()})")
    known = as_known_at if as_known_at is not None else now
    return Times(as_of if as_of is not None else known, known)


def recorded_events(app: LedgerApp, program_id: str, member_id: str) -> list[Recorded]:
    stored = app.store.read_stream(member_stream(program_id, member_id))
    if not stored:
        raise NotFound("member", member_id)
    return [Recorded(s.event_id, s.occurred_at, s.recorded_at, ev.decode(s.payload)) for s in stored]


def fold_member(
    app: LedgerApp,
    program_id: str,
    member_id: str,
    times: Times,
    recorded: list[Recorded] | None = None,
    observe: Callable[[MemberState, ev.MemberEvent], None] | None = None,
) -> AsOf:
    """The member's fold as of ``times`` (its personal-data profile read when enrolment stored one: a birthday
    grant due by then needs the birth month)."""
    events = recorded if recorded is not None else recorded_events(app, program_id, member_id)
    first = events[0].event
    has_profile = not (
        (isinstance(first, ev.MemberEnrolled) and first.profile_stored is False)
        or (isinstance(first, ev.MemberImported) and not first.profile_stored)
    )
    profile = app.personal.load(program_id, member_id) if has_profile else None
    policies = app.program(program_id).policies
    return fold_as_of(
        program_id, member_id, events, times.as_of, times.as_known_at, policies,
        profile.rule_inputs() if profile else None, observe,
    )  # fmt: skip


def member_as_of(
    app: LedgerApp, program_id: str, member_id: str, as_of: datetime | None, as_known_at: datetime | None
) -> MemberView:
    """The member as of ``as_of`` as known at ``as_known_at`` (see :func:`resolve_times` for the defaults).
    NOT_FOUND when the member had not been enrolled by then, as far as the log knew."""
    app.program(program_id)
    times = resolve_times(app, program_id, as_of, as_known_at)
    folded = fold_member(app, program_id, member_id, times)
    if not folded.state.enrolled:
        raise NotFound("member", f"{member_id} as of {times.as_of.isoformat()}")
    policies = app.program(program_id).policies
    try:
        policy = policies.in_force_at(times.as_of)
    except NoPolicyInForce:
        policy = policies.versions[0]
    return MemberView(folded.state, times.as_of, policy)


def program_members(app: LedgerApp, program_id: str) -> Iterator[str]:
    """Every member id of the program that has a stream, in stream order of the store's listing."""
    prefix = member_streams_of(program_id)
    for stream_id in app.store.list_streams(prefix):
        yield stream_id.removeprefix(prefix)


def lot_page(view: MemberView, statuses: Sequence[str], offset: int, size: int) -> tuple[list[LotRow], int, int]:
    """A page of the view's lots in the order debits consume them, as :meth:`LedgerApp.lots` answers."""
    wanted = set(statuses)
    rows = [
        lot_row(view.state, lot)
        for lot in sorted(view.state.lots.values(), key=lambda lot: lot.order_key())
        if not wanted or lot_status(lot) in wanted
    ]
    return rows[offset : offset + size], len(rows), view.state.version
