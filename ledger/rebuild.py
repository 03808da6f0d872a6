"""``ledger rebuild-projections``: fold every member stream again into fresh read-model tables, then switch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledger.application.service import LedgerApp
from ledger.backends import Backend
from ledger.domain import events as ev
from ledger.domain.decide import next_due
from ledger.domain.evolve import evolve
from ledger.domain.state import Balances, MemberState
from ledger.store.port import StoredEvent
from projections.rows import HistoryRow, history_row


def _member_of(stream_id: str, app: LedgerApp) -> tuple[str, str]:
    rest = stream_id.removeprefix("member-")
    for program_id in app.program_ids():
        if rest.startswith(program_id + "-"):
            return program_id, rest.removeprefix(program_id + "-")
    raise ValueError(f"stream {stream_id} belongs to no known program")


def rebuild_projections(app: LedgerApp, backend: Backend) -> dict[str, Any]:
    """Rebuild into fresh tables beside the live ones and switch over in one transaction (service keeps running)."""

    def fold(state: MemberState | None, events: Sequence[StoredEvent]) -> tuple[MemberState, list[HistoryRow]]:
        if state is None:
            program_id, member_id = _member_of(events[0].stream_id, app)
            state = MemberState(program_id=program_id, member_id=member_id)
        rows: list[HistoryRow] = []
        for stored in events:
            event = ev.decode(stored.payload)
            before = Balances.of(state)
            evolve(state, event)
            rows.append(history_row(stored, event, before, Balances.of(state)))
        return state, rows

    def due_at(state: MemberState) -> datetime | None:
        return next_due(state, app.context_of(state))

    report = backend.rebuild(fold, due_at)
    app.writer.forget()
    return {
        "members": report.members,
        "events": report.events,
        "history_rows": report.history_rows,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
        "summary": str(report),
    }
