"""The writer's bounded queue: a caller's pending requests, its wait for their answers, the writer taking a group.

A caller puts its requests on the queue (a full queue refuses at once with :class:`Overloaded`, unless the
request is the ledger's own time-driven work, which waits for room) and waits for each answer until its
deadline. The writer thread takes up to ``max_batch`` waiting requests at a time and answers at once, without
deciding them, those whose caller has already given up. ``None`` on the queue tells the writer to stop.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ledger.application.deadline import deadline_after
from ledger.application.write_requests import (
    DeadlineExceeded,
    GroupPhases,
    Overloaded,
    PhaseSink,
    Request,
    StoreUnavailable,
)

log = structlog.get_logger("ledger.writer")


@dataclass(slots=True)
class Pending:
    """One request on its way through the writer, and its answer once the writer gave it."""

    request: Request
    deadline: float = float("inf")
    """``time.monotonic()`` after which the writer no longer decides this request (its caller has given up)."""
    with_state: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    phases: GroupPhases | None = None
    """Set (before the answer) while traces are on: when the group that answered it was decided and committed."""

    def resolve(self, result: Any) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class WriteQueue:
    """The queue between the callers and the one writer thread."""

    def __init__(self, max_queue: int, store_down: Callable[[], bool]) -> None:
        self._queue: queue.Queue[Pending | None] = queue.Queue(maxsize=max_queue)
        self._store_down = store_down

    def qsize(self) -> int:
        return self._queue.qsize()

    # -- the callers' side ----------------------------------------------------------------------------------

    def submit(
        self,
        requests: Sequence[Request],
        timeout: float,
        wait_for_room: bool,
        with_state: bool,
        report: PhaseSink | None = None,
    ) -> list[Any]:
        """Queue ``requests`` and wait for their answers, in order (an error is raised for a single request)."""
        deadline = deadline_after(timeout)
        pendings = [Pending(r, deadline, with_state) for r in requests]
        for p in pendings:
            try:
                if wait_for_room:
                    self._queue.put(p, timeout=max(deadline - time.monotonic(), 0.001))
                else:
                    self._queue.put_nowait(p)
            except queue.Full as exc:
                raise Overloaded(f"the write queue is full ({self._queue.maxsize} waiting)") from exc
        out: list[Any] = []
        reported: GroupPhases | None = None
        for p in pendings:
            self._wait(p)
            if report is not None and p.phases is not None and p.phases is not reported:
                reported = p.phases  # once per group: a call's requests often share one
                try:
                    report(p.phases)
                except Exception as exc:  # traces must never fail a write that happened
                    log.warning("phase_report_failed", error=repr(exc))
            if p.error is not None:
                if len(pendings) == 1:
                    raise p.error
                out.append(p.error)
            else:
                out.append(p.result)
        return out

    def _wait(self, p: Pending) -> None:
        """Wait for ``p``'s answer until its deadline; answer UNAVAILABLE early once the store is known down."""
        while not p.done.wait(min(0.05, max(p.deadline - time.monotonic(), 0.0))):
            if self._store_down():
                raise StoreUnavailable("the store is unreachable; the write may or may not have been applied")
            if time.monotonic() >= p.deadline:
                raise DeadlineExceeded("the write was not answered before the deadline")

    # -- the writer's side ----------------------------------------------------------------------------------

    def take_group(self, max_batch: int) -> list[Pending] | None:
        """Wait for a request, then take up to ``max_batch`` waiting ones; those past their deadline are answered
        DEADLINE_EXCEEDED and left out (the group may then be empty). None: the writer is to stop."""
        first = self._queue.get()
        if first is None:
            return None
        group = [first]
        while len(group) < max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._queue.put(None)
                break
            group.append(nxt)
        now = time.monotonic()
        for p in group:
            # Its caller has given up: deciding it now would apply a write nobody waits for.
            if p.deadline <= now:
                p.fail(
                    DeadlineExceeded("the deadline passed before the write was decided; nothing was written")
                )
        return [p for p in group if p.deadline > now]

    def fail_queued(self, error: BaseException) -> int:
        """Answer every request still waiting with ``error`` (none of them was decided); how many."""
        failed = 0
        while True:
            try:
                p = self._queue.get_nowait()
            except queue.Empty:
                return failed
            if p is None:
                self._queue.put(None)
                return failed
            p.fail(error)
            failed += 1

    def close(self) -> None:
        """Tell the writer thread to stop once it has taken what is queued before."""
        self._queue.put(None)
