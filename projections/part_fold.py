"""One worker's fold of its part of the members in a parallel rebuild (see :mod:`projections.parallel`).

:class:`PartFold` folds the pages of its part in position order into a bounded cache of member states, evicts
the least recently folded (their rows written, their states dropped), reads an evicted member's stream again
when more of its events come, and writes history rows and members' rows in batches through the worker's own
connection (:class:`WorkerSide`). :class:`Plan` is what every worker is told at the fork.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, Final, Protocol

from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore, StoredEvent
from projections.rebuild import DueAt, Fold
from projections.rows import HistoryRow, member_identities
from projections.update import MemberUpdate

DEFAULT_CACHE_MEMBERS: Final = 50_000
"""Member states kept in all workers together (each keeps its share)."""
_MEMBER_BATCH: Final = 2_000


def partition_of(stream_id: str, workers: int) -> int:
    """The worker that folds ``stream_id``: the first four bytes of its MD5, big-endian, modulo ``workers``
    (the same as PostgreSQL's ``('x' || substr(md5(stream_id), 1, 8))::bit(32)::bigint % workers``)."""
    return int.from_bytes(hashlib.md5(stream_id.encode()).digest()[:4], "big") % workers


class WorkerSide(Protocol):
    """What a worker opens after the fork: a reader of the log and a connection to the fresh tables."""

    store: EventStore[Any]
    """For reading an evicted member's stream again."""

    def read_part(self, after: int, upto: int, limit: int) -> list[StoredEvent]:
        """Up to ``limit`` events of this worker's part with ``after < position <= upto``, in position order."""
        ...

    def transaction(self, work: Callable[[Any], None]) -> None:
        """Run ``work(conn)`` in one transaction on the worker's own connection and commit it."""
        ...

    def close(self) -> None: ...


OpenSide = Callable[[int, int], WorkerSide]
"""``open_side(index, workers)``: called in worker ``index`` after the fork."""


class RowWriter(Protocol):
    """The projector methods a worker writes through (see ``projections.rebuild.RebuildWriter``)."""

    def write_history(self, conn: Any, rows: Iterable[HistoryRow], *, fresh: bool = False) -> int: ...

    def write_members(self, conn: Any, updates: Iterable[MemberUpdate], *, fresh: bool) -> None: ...

    def write_identities(self, conn: Any, rows: Iterable[tuple[str, str, str]]) -> None: ...


ForgetIdentities = Callable[[Any, Sequence[tuple[str, str]]], None]
"""``forget(conn, [(program_id, member_id), ...])``: delete those members' identity rows from the fresh tables."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What every worker is told at the fork."""

    workers: int
    upto: int
    """The last position of the log when the rebuild started: each worker reads its part up to it."""
    stream_prefix: str
    page_size: int
    flush_rows: int
    cache_members: int
    fold: Fold
    due_at: DueAt
    open_side: OpenSide
    writer: RowWriter
    forget_identities: ForgetIdentities


@dataclass(slots=True)
class WorkerReport:
    """What a worker did (sent to the parent once its part is written)."""

    events: int = 0
    other_events: int = 0
    members: int = 0
    history_rows: int = 0
    reloaded: int = 0
    """Member streams read again after their state was evicted."""
    read_seconds: float = 0.0
    fold_seconds: float = 0.0
    write_seconds: float = 0.0
    start_rss_kb: int = 0
    """The worker's resident set when it began (mostly pages shared with its parent since the fork)."""
    peak_rss_kb: int = 0
    """Its peak resident set (``ru_maxrss``)."""


def rss_kb() -> int:
    """This process's resident set now (KiB), from ``/proc/self/statm`` (0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return 0


def wire(event: StoredEvent) -> tuple[Any, ...]:
    """``event`` as plain values for a pipe (its actor is a read-only mapping, which does not pickle)."""
    e = event
    return (e.event_id, e.type, e.schema_version, e.occurred_at, e.recorded_at, e.policy_version, e.idempotency_key,
            e.correlation_id, e.causation_id, dict(e.actor), e.payload, e.stream_id, e.version, e.position,
            e.prev_hash, e.hash)  # fmt: skip


def unwire(values: tuple[Any, ...]) -> StoredEvent:
    v = values
    return StoredEvent(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], MappingProxyType(v[9]), v[10], v[11],
                       v[12], v[13], v[14], v[15])  # fmt: skip


@dataclass(slots=True)
class _Member:
    state: MemberState
    written: bool
    """Whether rows of this member may be in the fresh tables already (they are then synchronised)."""


@dataclass
class PartFold:
    """One worker's fold of its part: a bounded cache of member states, history rows and evicted members waiting
    to be written."""

    plan: Plan
    side: WorkerSide
    report: WorkerReport = field(default_factory=WorkerReport)
    cache: OrderedDict[str, _Member] = field(default_factory=OrderedDict)
    evicted: dict[str, _Member] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)

    def fold_page(self, events: Sequence[StoredEvent], *, evict: bool = True) -> set[str]:
        """Fold a page of events in position order; return the member streams it touched."""
        prefix, fold, cache = self.plan.stream_prefix, self.plan.fold, self.cache
        by_stream: dict[str, list[StoredEvent]] = {}
        for stored in events:
            if stored.stream_id.startswith(prefix):
                by_stream.setdefault(stored.stream_id, []).append(stored)
            else:
                self.report.other_events += 1
        for stream_id, stream_events in by_stream.items():
            member = cache.pop(stream_id, None) or self._recall(stream_id, stream_events[0])
            state, rows = fold(member.state if member else None, stream_events)
            if member is None:
                member = _Member(state, written=False)
                self.report.members += 1
            else:
                member.state = state
            cache[stream_id] = member
            self.history.extend(rows)
            self.report.events += len(stream_events)
        if evict:
            while len(cache) > self.plan.cache_members:
                stream_id, member = cache.popitem(last=False)
                self.evicted[stream_id] = member
        return set(by_stream)

    def _recall(self, stream_id: str, first: StoredEvent) -> _Member | None:
        """The member of an evicted state, folded again from its stream up to ``first``; None at its start."""
        waiting = self.evicted.pop(stream_id, None)
        if waiting is not None or first.version == 1:
            return waiting
        earlier = self.side.store.read_stream(stream_id, 0, first.version - 1)
        if len(earlier) != first.version - 1:
            raise RuntimeError(f"stream {stream_id} has {len(earlier)} events before version {first.version}")
        state, _rows = self.plan.fold(None, earlier)  # their history rows are written already
        self.report.reloaded += 1
        return _Member(state, written=True)

    def flush(self, *, everything: bool = False) -> None:
        """Write the history rows and evicted members once there are enough of them (all with ``everything``,
        and then every cached member too, which stays cached for the catch-up)."""
        members = list(self.evicted.values())
        if everything:
            members += self.cache.values()
        elif len(self.history) < self.plan.flush_rows and len(members) < _MEMBER_BATCH:
            return
        started = time.perf_counter()
        rows, self.history = self.history, []
        self.evicted = {}
        for start in range(0, max(len(members), 1), _MEMBER_BATCH):
            chunk = members[start : start + _MEMBER_BATCH]
            updates = [(m, self._update(m.state)) for m in chunk]
            batch = rows if start == 0 else []
            self.side.transaction(partial(self._write, batch, updates))
            for m in chunk:
                m.written = True
        self.report.history_rows += len(rows)
        self.report.write_seconds += time.perf_counter() - started

    def _update(self, state: MemberState) -> MemberUpdate:
        return MemberUpdate(state.program_id, state.member_id, state, (), self.plan.due_at(state))

    def _write(
        self, history: list[HistoryRow], updates: list[tuple[_Member, MemberUpdate]], conn: Any
    ) -> None:
        writer = self.plan.writer
        if history:
            writer.write_history(conn, history, fresh=True)
        fresh = [u for m, u in updates if not m.written]
        again = [u for m, u in updates if m.written]
        if again:
            self.plan.forget_identities(conn, [(u.program_id, u.member_id) for u in again])
            writer.write_members(conn, again, fresh=False)
        if fresh:
            writer.write_members(conn, fresh, fresh=True)
        identities = [(u.program_id, i, u.member_id) for _m, u in updates for i in member_identities(u.state)]
        if identities:
            writer.write_identities(conn, identities)

    def read_part(self) -> None:
        """Read and fold this worker's part of the log up to the plan's position, writing as it goes."""
        position, plan = 0, self.plan
        while position < plan.upto:
            started = time.perf_counter()
            page = self.side.read_part(position, plan.upto, plan.page_size)
            read = time.perf_counter()
            self.report.read_seconds += read - started
            if not page:
                break
            self.fold_page(page)
            self.report.fold_seconds += time.perf_counter() - read
            position = page[-1].position
            self.flush()
        self.flush(everything=True)

    def caught_up(
        self, touched: set[str], members_before: int
    ) -> tuple[list[HistoryRow], list[MemberUpdate], int]:
        """The history rows and member updates of the catch-up, for the parent to write, and how many members
        it began."""
        rows, self.history = self.history, []
        updates = [self._update(self.cache[s].state) for s in sorted(touched)]
        return rows, updates, self.report.members - members_before
