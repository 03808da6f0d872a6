"""Rebuilding every read model from the event log.

:func:`rebuild` reads the whole log with ``read_all`` in large pages, groups each page's events by stream and
hands every member stream's events, in order, to a caller-supplied ``fold`` (the application owns decoding,
evolving and the history rows), keeping each member's state between pages. History rows are written as it
goes, in batches, each batch its own transaction; the members' current rows are written once the log is
exhausted. Everything goes into fresh ``rb_``-prefixed tables while the live tables keep serving.

The switch-over is one ``BEGIN IMMEDIATE`` transaction on ``conn``: it folds whatever was appended since the
last page (holding the write lock, so nothing more can arrive), rewrites those members' rows, sets the
checkpoint to the last position folded, drops the live tables and renames the fresh ones. Readers see the
old tables until the commit and the new ones after it. ``conn`` must be a connection to the event store's
own SQLite file (for the lock to cover the appends) in autocommit mode (``isolation_level=None``) with no
transaction open; the rebuild begins and commits its own transactions on it.

If anything fails before the switch-over commits, the live tables are untouched and the fresh ones are
dropped. Memory: the states of all members are kept until the end (not their events), which is what lets
the switch-over catch up without reading any stream again; it grows with the number of members and the size
of their states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore, StoredEvent
from projections.rows import HistoryRow, member_identities
from projections.update import MemberUpdate

Fold = Callable[[MemberState | None, Sequence[StoredEvent]], tuple[MemberState, list[HistoryRow]]]
"""``fold(state, events) -> (state, history_rows)``: continue a member's fold with the next events of its stream
(``state`` is None at the start of the stream) and return the state after them and their history rows."""

DueAt = Callable[[MemberState], datetime | None]
"""The member's next due time (what the ``due`` table holds), from its final state."""

DEFAULT_PAGE_SIZE: Final = 20_000
DEFAULT_FLUSH_ROWS: Final = 50_000
_MEMBER_BATCH: Final = 2_000
MEMBERS_PER_TRANSACTION: Final = 5_000


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    """Member events folded."""
    other_events: int
    """Events of streams outside the member prefix (program streams), read and skipped."""
    members: int
    history_rows: int
    position: int
    """The checkpoint: the position of the last event read."""
    caught_up: int
    """Events appended while the rebuild ran, folded in the switch-over transaction."""
    seconds: float
    read_seconds: float = 0.0
    """Of ``seconds``: reading the log (``read_all``)."""
    fold_seconds: float = 0.0
    """Of ``seconds``: in the caller's ``fold`` and ``due_at``."""
    write_seconds: float = 0.0
    """Of ``seconds``: encoding and writing rows, committing, switching the tables over."""
    workers: int = 0
    """Worker processes the fold ran in (:mod:`projections.parallel`; 0: in this process). With workers, the
    three splits above are the workers' times added up (they overlap in wall-clock time)."""
    reloaded: int = 0
    """Member streams read again after their state was evicted from a worker's bounded cache."""
    peak_rss_kb: int = 0
    """The largest worker's peak resident set (KiB), with workers: pages shared with the parent included."""
    worker_growth_kb: int = 0
    """The largest growth of a worker's resident set from its start to its peak (KiB): what its fold kept."""

    @property
    def events_per_second(self) -> float:
        total = self.events + self.other_events
        return total / self.seconds if self.seconds > 0 else float(total)

    def __str__(self) -> str:
        where = (
            f"; {self.workers} workers, peak RSS {self.peak_rss_kb // 1024} MiB each at most (grown by at most "
            f"{self.worker_growth_kb // 1024} MiB from their start), "
            f"{self.reloaded} streams read again; the splits are their times added up"
            if self.workers
            else ""
        )
        return (
            f"rebuilt {self.members} members from {self.events} events ({self.other_events} others skipped, "
            f"{self.caught_up} caught up at the switch) up to position {self.position}: {self.history_rows} "
            f"history rows in {self.seconds:.2f}s ({self.events_per_second:,.0f} events/s; reading "
            f"{self.read_seconds:.2f}s, folding {self.fold_seconds:.2f}s, writing {self.write_seconds:.2f}s{where})"
        )


class RebuildWriter(Protocol):
    """What a rebuild writes through: :class:`SqliteProjector` or ``ledger.adapters.postgres.projector.PgProjector``."""

    def write_history(self, conn: Any, rows: Iterable[HistoryRow], *, fresh: bool = False) -> int: ...

    def write_members(self, conn: Any, updates: Iterable[MemberUpdate], *, fresh: bool) -> None: ...

    def write_identities(self, conn: Any, rows: Iterable[tuple[str, str, str]]) -> None: ...

    def set_checkpoint(self, conn: Any, position: int) -> None: ...


class RebuildRun:
    """The fold of a rebuild: pages of the log folded into member states and history rows, then written
    through ``writer`` on ``conn`` (a SQLite or PostgreSQL connection; the same on both)."""

    def __init__(
        self,
        store: EventStore[Any],
        conn: Any,
        fold: Fold,
        due_at: DueAt,
        *,
        stream_prefix: str,
        page_size: int,
        writer: RebuildWriter,
    ) -> None:
        self.store = store
        self.conn = conn
        self.fold = fold
        self.due_at = due_at
        self.stream_prefix = stream_prefix
        self.page_size = page_size
        self.writer = writer
        self.states: dict[str, MemberState] = {}
        self.history: list[HistoryRow] = []
        self.position = 0
        self.events = 0
        self.other_events = 0
        self.history_rows = 0
        self.read_seconds = 0.0
        self.fold_seconds = 0.0

    def read_page(self) -> set[str] | None:
        """Fold the next page; return the streams it touched (None once the log is exhausted)."""
        started = time.perf_counter()
        page = self.store.read_all(after_position=self.position, limit=self.page_size)
        read = time.perf_counter()
        self.read_seconds += read - started
        if not page:
            return None
        by_stream: dict[str, list[StoredEvent]] = {}
        for stored in page:
            by_stream.setdefault(stored.stream_id, []).append(stored)
        prefix = self.stream_prefix
        for stream_id, events in by_stream.items():
            if not stream_id.startswith(prefix):
                self.other_events += len(events)
                continue
            state, rows = self.fold(self.states.get(stream_id), events)
            self.states[stream_id] = state
            self.history.extend(rows)
            self.events += len(events)
        self.position = page[-1].position
        self.fold_seconds += time.perf_counter() - read
        return {stream_id for stream_id in by_stream if stream_id.startswith(prefix)}

    def write_history(self, *, fresh: bool = True) -> None:
        if self.history:
            self.history_rows += self.writer.write_history(self.conn, self.history, fresh=fresh)
            self.history = []

    def write_members(self, stream_ids: Sequence[str], *, fresh: bool) -> None:
        for start in range(0, len(stream_ids), _MEMBER_BATCH):
            chunk = [self.states[sid] for sid in stream_ids[start : start + _MEMBER_BATCH]]
            started = time.perf_counter()
            updates = [MemberUpdate(s.program_id, s.member_id, s, (), self.due_at(s)) for s in chunk]
            self.fold_seconds += time.perf_counter() - started
            self.writer.write_members(self.conn, updates, fresh=fresh)
            self.writer.write_identities(
                self.conn, [(s.program_id, i, s.member_id) for s in chunk for i in member_identities(s)]
            )
