"""A rebuild's fold spread over worker processes: members partitioned by a stable hash of their stream id.

Member streams are independent, so :class:`ParallelFold` forks ``workers`` processes and gives each a part of
the members: worker ``k`` of ``n`` folds the streams whose :func:`partition_of` is ``k``. Each worker reads the
log itself, in large pages of its own part up to the position the rebuild started from (the backend filters by
the same hash in SQL, so an event is decoded once, by the worker that folds it), and writes the history rows and
its members' current rows into the fresh tables on a connection of its own, in large batches.

Memory is bounded: a worker keeps at most ``cache_members`` member states. The least recently folded is evicted:
its rows are written and its state dropped. A member whose events come again after that is read from its stream
(up to the event at hand) and folded again, its earlier history rows left as they were written; its current rows
are then rewritten (synchronised, its identity rows first deleted) rather than inserted.

Once every worker has read its part, the caller switches over (see the backends' ``rebuild``): it reads the
events appended meanwhile through the store, sends each to its member's worker (:meth:`ParallelFold.catch_up`)
and writes the rows they send back on its own connection, in the switch-over transaction.

Workers are forked (``fork`` start method): they inherit the caller's fold (the programs and policies it uses)
and must open everything else anew after the fork (:data:`OpenSide`): a connection or pool inherited from the
parent is never used in a child.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import resource
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection, wait
from types import MappingProxyType
from typing import Any, Final, Protocol

from ledger.domain.state import MemberState
from ledger.eventlog.port import EventStore, StoredEvent
from projections.rebuild import DueAt, Fold, RebuildReport
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


def _worker(pipe: Connection, index: int, plan: Plan) -> None:
    """A worker process: read and write its part, report, then fold the catch-up the parent sends."""
    try:
        start_rss = rss_kb()
        side = plan.open_side(index, plan.workers)
        try:
            part = PartFold(plan, side)
            part.report.start_rss_kb = start_rss
            part.read_part()
            part.report.peak_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            pipe.send(("done", part.report))
            touched: set[str] = set()
            members = part.report.members
            while True:
                message = pipe.recv()
                if message[0] == "events":
                    touched |= part.fold_page([unwire(v) for v in message[1]], evict=False)
                elif message[0] == "collect":
                    pipe.send(("caught", *part.caught_up(touched, members)))
                    touched, members = set(), part.report.members
                else:
                    return
        finally:
            side.close()
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
        raise


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What the switch-over folded."""

    position: int
    events: int
    other_events: int
    members: int
    history_rows: int


def parallel_report(
    parts: Sequence[WorkerReport], before: CatchUp, switch: CatchUp, seconds: float
) -> RebuildReport:
    """The rebuild's report from its workers' figures and those of the catch-ups before and in the switch-over."""
    return RebuildReport(
        events=sum(p.events for p in parts) + before.events + switch.events,
        other_events=sum(p.other_events for p in parts) + before.other_events + switch.other_events,
        members=sum(p.members for p in parts) + before.members + switch.members,
        history_rows=sum(p.history_rows for p in parts) + before.history_rows + switch.history_rows,
        position=switch.position,
        caught_up=switch.events + switch.other_events,
        seconds=seconds,
        read_seconds=sum(p.read_seconds for p in parts),
        fold_seconds=sum(p.fold_seconds for p in parts),
        write_seconds=sum(p.write_seconds for p in parts),
        workers=len(parts),
        reloaded=sum(p.reloaded for p in parts),
        peak_rss_kb=max((p.peak_rss_kb for p in parts), default=0),
        worker_growth_kb=max((p.peak_rss_kb - p.start_rss_kb for p in parts), default=0),
    )


class RebuildWorkerFailed(RuntimeError):
    """A worker process of a rebuild failed (its traceback is the message) or ended without a word."""


class ParallelFold:
    """The parent's side: fork the workers, wait for their parts, route the catch-up, stop them."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.position = plan.upto
        """The last position folded."""
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for index in range(plan.workers):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker, args=(child, index, plan), name=f"rebuild-{index}", daemon=True
            )
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)

    def _receive(self, pipe: Connection, expected: str) -> tuple[Any, ...]:
        try:
            message = pipe.recv()
        except EOFError:
            raise RebuildWorkerFailed("a rebuild worker ended without reporting") from None
        if message[0] == "error":
            raise RebuildWorkerFailed(message[1])
        if message[0] != expected:
            raise RebuildWorkerFailed(f"a rebuild worker sent {message[0]!r}, not {expected!r}")
        return tuple(message)

    def wait_parts(self) -> list[WorkerReport]:
        """Block until every worker has read and written its part; a failure in any is raised at once."""
        reports: dict[int, WorkerReport] = {}
        waiting = dict(enumerate(self.pipes))
        while waiting:
            for ready in wait(list(waiting.values())):
                index = self.pipes.index(ready)  # type: ignore[arg-type]
                reports[index] = self._receive(waiting.pop(index), "done")[1]
        return [reports[i] for i in range(len(self.pipes))]

    def catch_up(self, events: Sequence[StoredEvent]) -> tuple[list[HistoryRow], list[MemberUpdate], int]:
        """Fold ``events`` (appended after the plan's position) in their members' workers: their history rows,
        the updates of the members they touched and how many members they began."""
        parts: list[list[tuple[Any, ...]]] = [[] for _ in self.pipes]
        for stored in events:
            parts[partition_of(stored.stream_id, self.plan.workers)].append(wire(stored))
        for pipe, part in zip(self.pipes, parts, strict=True):
            if part:
                pipe.send(("events", part))
            pipe.send(("collect",))
        rows: list[HistoryRow] = []
        updates: list[MemberUpdate] = []
        members = 0
        for pipe in self.pipes:
            _, worker_rows, worker_updates, began = self._receive(pipe, "caught")
            rows += worker_rows
            updates += worker_updates
            members += began
        return rows, updates, members

    def follow(self, store: EventStore[Any]) -> Callable[[Any, RowWriter], CatchUp]:
        """Catch up: read what was appended after the last position folded through ``store`` and fold it in
        the workers; the function returned writes its rows (synchronised) on a connection through a writer, in
        the caller's transaction.

        Called once before the switch-over (the reading and folding outside its lock and transaction, so that
        the lock is held for what comes in the meantime only) and once in it."""
        plan = self.plan
        events: list[StoredEvent] = []
        while page := store.read_all(after_position=self.position, limit=plan.page_size):
            events += page
            self.position = page[-1].position
        member_events = [e for e in events if e.stream_id.startswith(plan.stream_prefix)]
        rows, updates, members = self.catch_up(member_events)
        position = self.position

        def write(conn: Any, writer: RowWriter) -> CatchUp:
            written = writer.write_history(conn, rows, fresh=False) if rows else 0
            if updates:
                plan.forget_identities(conn, [(u.program_id, u.member_id) for u in updates])
                writer.write_members(conn, updates, fresh=False)
                identities = [
                    (u.program_id, i, u.member_id) for u in updates for i in member_identities(u.state)
                ]
                if identities:
                    writer.write_identities(conn, identities)
            return CatchUp(position, len(member_events), len(events) - len(member_events), members, written)

        return write

    def stop(self) -> None:
        """Tell the workers to end and wait for them (those that do not end in time are terminated)."""
        for pipe in self.pipes:
            with suppress(OSError):  # a worker that failed has closed its end
                pipe.send(("stop",))
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
        for pipe in self.pipes:
            pipe.close()
