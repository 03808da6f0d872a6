"""``ledger rebuild-projections``: fold every member stream again into fresh read-model tables, then switch."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ledger.application.personal import PersonalData
from ledger.application.service import LedgerApp
from ledger.bootstrap import Backend, history_fold
from ledger.domain.state import MemberState
from ledger.domain.streams import parse_member_stream
from ledger.eventlog.port import StoredEvent
from projections.rows import HistoryRow


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, as it was after it.

    A rebuild keeps every member's state until the end, and each event it decodes allocates a dozen objects:
    with the collector on, its passes traverse the growing heap of states again and again (measured: about
    half the cost of decoding an event that is kept). The fold makes no reference cycles (a rebuild with the
    collector off leaves nothing for ``gc.collect`` to find), so reference counting frees everything it drops
    and memory is what it would be with the collector on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def default_workers() -> int:
    """One worker process per CPU."""
    return os.cpu_count() or 1


def rebuild_projections(app: LedgerApp, backend: Backend, workers: int | None = None) -> dict[str, Any]:
    """Rebuild into fresh tables beside the live ones and switch over in one transaction (service keeps running).

    The fold runs in ``workers`` processes (default :func:`default_workers`; 0: in this process), members
    partitioned over them by their stream id, where the backend can (the embedded SQLite store and PostgreSQL);
    each worker is forked from this process and looks up profiles in a personal-data store it opens itself.
    The cyclic garbage collector is paused meanwhile (:func:`cyclic_gc_paused`): this is a process of its own
    (``ledger rebuild-projections``), never a server's.
    """
    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise ValueError("workers must be 0 or more")

    programs = set(app.program_ids())
    history = history_fold(app)

    def fold(state: MemberState | None, events: Sequence[StoredEvent]) -> tuple[MemberState, list[HistoryRow]]:
        if state is None and parse_member_stream(events[0].stream_id)[0] not in programs:
            raise ValueError(f"stream {events[0].stream_id} belongs to no known program")
        return history(state, events)

    def in_worker(personal: PersonalData) -> None:  # in a forked worker: never the parent's connections
        app.personal = personal

    with cyclic_gc_paused():
        report = backend.rebuild(fold, app.due_at, workers, in_worker)
    app.writer.forget()
    return {
        "workers": report.workers,
        "members": report.members,
        "events": report.events,
        "history_rows": report.history_rows,
        "seconds": round(report.seconds, 3),
        "events_per_second": round(report.events_per_second),
        "peak_worker_rss_kb": report.peak_rss_kb,
        "worker_rss_growth_kb": report.worker_growth_kb,
        "summary": str(report),
    }
