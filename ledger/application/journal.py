"""The revenue-recognition journal of a program's period, read from the log (see :mod:`ledger.domain.journal`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from ledger.application.as_of import program_members
from ledger.application.liability import policy_at
from ledger.application.service import LedgerApp
from ledger.domain import events as ev
from ledger.domain.as_of import Recorded
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.domain.journal import INSTANT, Journal, MemberLog, program_journal
from ledger.domain.streams import member_stream


def member_log(app: LedgerApp, program_id: str, member_id: str) -> MemberLog:
    stored = app.store.read_stream(member_stream(program_id, member_id))
    if not stored:
        raise NotFound("member", member_id)
    return MemberLog(
        member_id,
        [Recorded(s.event_id, s.occurred_at, s.recorded_at, ev.decode(s.payload)) for s in stored],
        {s.event_id: (s.version, s.position) for s in stored},
    )


def journal_of(
    app: LedgerApp,
    program_id: str,
    start: datetime,
    end: datetime,
    member_ids: Iterable[str] | None = None,
    as_known_at: datetime | None = None,
) -> Journal:
    """The journal of ``[start, end)`` as known now (or at ``as_known_at``), of every member of the program (or
    of ``member_ids``). ``end`` may be at most an instant after that time (the log does not know the future)."""
    app.program(program_id)
    now = as_known_at if as_known_at is not None else app.now(program_id)
    if end - INSTANT > now:
        raise InvalidCommand("to", f"is after the program's clock ({now.isoformat()})")
    if start > end:
        raise InvalidCommand("from", "is after to")
    policy = policy_at(app, program_id, end - INSTANT)
    ids = list(member_ids) if member_ids is not None else list(program_members(app, program_id))

    def logs() -> Iterator[MemberLog]:
        for member_id in ids:
            yield member_log(app, program_id, member_id)

    return program_journal(
        program_id, logs(), app.program(program_id).policies, start, end, now, policy.redemption.point_value_fen,
        ZoneInfo(policy.timezone),
    )  # fmt: skip
