"""``ledger rebuild-projections``: fold every member stream again into fresh read-model tables, then switch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.application.service import LedgerApp
from ledger.bootstrap import Backend, history_fold
from ledger.domain.state import MemberState
from ledger.domain.streams import parse_member_stream
from ledger.eventlog.port import StoredEvent
from projections.rows import HistoryRow


def rebuild_projections(app: LedgerApp, backend: Backend) -> dict[str, Any]:
    """Rebuild into fresh tables beside the live ones and switch over in one transaction (service keeps running)."""

    programs = set(app.program_ids())
    history = history_fold(app)

    def fold(state: MemberState | None, events: Sequence[StoredEvent]) -> tuple[MemberState, list[HistoryRow]]:
        if state is None and parse_member_stream(events[0].stream_id)[0] not in programs:
            raise ValueError(f"stream {events[0].stream_id} belongs to no known program")
        return history(state, events)

    report = backend.rebuild(fold, app.due_at)
    app.writer.forget()
    return {
        "members": report.members,
        "events": report.events,
        "history_rows": report.history_rows,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
        "summary": str(report),
    }
