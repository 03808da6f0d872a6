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

import multiprocessing
import resource
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from ledger.eventlog.port import EventStore, StoredEvent
from projections.part_fold import (
    DEFAULT_CACHE_MEMBERS,
    PartFold,
    Plan,
    RowWriter,
    WorkerReport,
    WorkerSide,
    partition_of,
    rss_kb,
    unwire,
    wire,
)
from projections.rebuild import RebuildReport
from projections.rows import HistoryRow, member_identities
from projections.update import MemberUpdate

__all__ = [
    "DEFAULT_CACHE_MEMBERS",
    "CatchUp",
    "ParallelFold",
    "Plan",
    "RebuildWorkerFailed",
    "WorkerSide",
    "parallel_report",
    "partition_of",
    "rss_kb",
]


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
