"""The one write path: a single writer thread that decides commands in order and commits them in groups.

Callers (gRPC handlers, the scheduler, ``AdvanceClock``) put commands on a bounded queue and wait. The writer
takes up to ``max_batch`` commands at a time; for each it checks the idempotency key, loads the member's state,
runs what fell due up to now (``tick``), decides, and applies the events to the state. Then one store
transaction appends every event of the group, records the commands and updates the projections; only after it
commits (fsync) are the callers answered. Commands for one member in one group see each other's effects, so
two terminals redeeming at once can never overspend: they are decided one after the other.

Several service replicas may share one store (``shared=True``). Then a cached state is only a starting point:
before deciding, the writer reads the events other replicas appended since (usually none, one cheap query),
and every append carries the version the decision was made on. If another replica got there first the store
refuses the whole group (nothing written), the writer drops what it cached and decides the unanswered
commands again, as often as the write path's one retry policy allows (:mod:`~ledger.application.retry`),
then answers :class:`Contended` (gRPC ``ABORTED``). A retried idempotency key that another replica recorded in
the meantime is found on the next attempt and answered with the first answer.

Program writes (create, publish a policy, move a test clock: :mod:`~ledger.application.program_writes`) hold the
writer's lock while they are decided and appended, and share its idempotency fingerprint
(:mod:`~ledger.application.idempotency`), its event ids (:mod:`~ledger.application.new_events`) and its retry
policy.

Queries go through the writer too (:class:`Peek`): it applies what fell due, then answers with a private copy
of the cached state, so a read after a write that returned sees that write.

This module is the writer's thread and its callers' entry; the rest of the write path is, in order: the queue
(:mod:`~ledger.application.write_queue`), the group commit (:mod:`~ledger.application.group_commit`), deciding one
request (:mod:`~ledger.application.command_staging`) on the staged member, household and stock streams
(:mod:`~ledger.application.member_staging`, :mod:`~ledger.application.household_staging`,
:mod:`~ledger.application.stock_staging`); what callers hand it and how it refuses is
:mod:`~ledger.application.write_requests`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog

from ledger.application.group_commit import GroupCommit, ProjectionHook, fail_unanswered
from ledger.application.member_staging import AppliedEvent, MemberCache, MemberChange
from ledger.application.new_events import SCHEMA_VERSION
from ledger.application.ports import ProgramDirectory
from ledger.application.retry import WriteRetry
from ledger.application.write_queue import Pending, WriteQueue
from ledger.application.write_requests import (
    Contended,
    DeadlineExceeded,
    GroupObserver,
    GroupPhases,
    Overloaded,
    Peek,
    PeekResult,
    PhaseSink,
    Quote,
    Request,
    StoreUnavailable,
    WaitObserver,
)
from ledger.eventlog.port import EventStore, StoreError

log = structlog.get_logger("ledger.writer")

__all__ = [
    "SCHEMA_VERSION",
    "AppliedEvent",
    "CommandWriter",
    "Contended",
    "DeadlineExceeded",
    "GroupObserver",
    "GroupPhases",
    "MemberChange",
    "Overloaded",
    "Peek",
    "PeekResult",
    "PhaseSink",
    "ProgramDirectory",
    "ProjectionHook",
    "Quote",
    "Request",
    "StoreUnavailable",
    "WaitObserver",
]


class CommandWriter:
    """The single writer: one thread taking groups from the queue and committing each (see the module)."""

    def __init__(
        self,
        store: EventStore[Any],
        programs: ProgramDirectory,
        project: ProjectionHook,
        *,
        max_batch: int = 256,
        max_queue: int = 1_000,
        cache_size: int = 50_000,
        shared: bool = False,
        retry: WriteRetry | None = None,
        project_in_transaction: bool | None = None,
    ) -> None:
        # False: the store cannot run hooks in its transaction (KurrentDB); ``project`` is then called after the
        # append committed with ``tx=None`` and opens its own read-model transaction. None: ask the store.
        in_transaction = (
            bool(getattr(store, "supports_in_transaction", True))
            if project_in_transaction is None
            else project_in_transaction
        )
        self._max_batch = max_batch
        self._queue = WriteQueue(max_queue, lambda: self.store_down)
        self._cache = MemberCache(cache_size)  # members as last committed (writer thread only)
        self._groups = GroupCommit(
            store,
            programs,
            project,
            self._cache,
            shared=shared,
            retry=retry or WriteRetry(),
            in_transaction=in_transaction,
        )
        self._stopped = False
        self.store_down = False
        """Set while the store is known to be unreachable (by :class:`~ledger.application.supervisor.Supervisor`):
        new requests are refused at once and waiting callers answered, instead of waiting out their deadline."""
        self.lock = threading.RLock()  # held while a group is decided and committed
        self.restarts = 0
        self.on_group: GroupObserver | None = None  # metrics; one call per group, never per command
        self.on_wait: WaitObserver | None = None  # traces; None: nothing around the wait
        self._thread = self._start_thread()

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        thread.start()
        return thread

    def restart(self) -> bool:
        """Start a new writer thread if the last one died (not if it was stopped); True if one was started.

        Cached states are dropped, so every member is folded from the log again: what the dead thread committed
        is read back, what it did not commit was never answered OK (its callers got UNAVAILABLE).
        """
        if self._stopped or self._thread.is_alive():
            return False
        with self.lock:
            self._cache.clear()
        self.restarts += 1
        self._thread = self._start_thread()
        return True

    # -- callers --------------------------------------------------------------------------------------------

    def execute(self, request: Request, timeout: float = 30.0, *, with_state: bool = False) -> Any:
        """Submit one request and wait for its result. ``with_state``: a command's result carries a private copy
        of the member's state after it (:attr:`CommandResult.state_after`)."""
        return self.execute_many([request], timeout, with_state=with_state)[0]

    def execute_many(
        self,
        requests: Sequence[Request],
        timeout: float = 60.0,
        *,
        wait_for_room: bool = False,
        with_state: bool = False,
    ) -> list[Any]:
        """Submit several requests at once; results (or exceptions, raised for a single request) in order.

        The wait ends at the current call's deadline (:data:`~ledger.application.deadline.CALL_DEADLINE`) or
        after ``timeout`` seconds, whichever is first. A full queue raises :class:`Overloaded` at once, unless
        ``wait_for_room`` (the ledger's own time-driven work, which must not be shed), which waits for room.
        ``with_state``: each command's result carries a private copy of the member's state after it.
        """
        if self._stopped:
            raise StoreUnavailable("the ledger is shutting down")
        if self.store_down:
            raise StoreUnavailable("the store is unreachable")
        observe = self.on_wait
        if observe is None:
            return self._queue.submit(requests, timeout, wait_for_room, with_state)
        with observe(len(requests), self._queue.qsize()) as report:
            return self._queue.submit(requests, timeout, wait_for_room, with_state, report)

    @property
    def queued(self) -> int:
        """Requests waiting for the writer."""
        return self._queue.qsize()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the writer (approximate, as queue sizes are)."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """False once the writer thread has ended (stopped, or died): nothing more will be written."""
        return self._thread.is_alive()

    def fail_queued(self, error: BaseException) -> int:
        """Answer every request still waiting in the queue with ``error`` (none of them was decided)."""
        return self._queue.fail_queued(error)

    def stop(self) -> None:
        self._stopped = True
        self._queue.close()
        self._thread.join(timeout=10)

    def forget(self, stream_id: str | None = None) -> None:
        """Drop cached states (all, or one stream) so they are loaded from the log again."""
        with self.lock:
            if stream_id is None:
                self._cache.clear()
            else:
                self._cache.drop((stream_id,))

    # -- the writer thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            group = self._queue.take_group(self._max_batch)
            if group is None:
                return
            if group:
                with self.lock:
                    self._commit_group(group)

    def _commit_group(self, group: list[Pending]) -> None:
        try:
            self._groups.run(group, timed=self.on_wait is not None, observe=self.on_group)
        except StoreError as exc:  # reading the log failed: nothing of the group was written
            log.error("group_not_decided", error=repr(exc), commands=len(group))
            self._groups.clear_cache()
            fail_unanswered(group, StoreUnavailable(f"the store could not be read: {exc}"))
        except Exception as exc:  # never let one group stop the writer: fail what is unanswered
            log.exception("group_failed", error=repr(exc), commands=len(group))
            self._groups.clear_cache()
            fail_unanswered(group, exc)
        except BaseException as exc:
            # The thread is going down (the supervisor starts another one): its callers must not wait
            # for an answer that never comes. What it committed is in the log; the next thread reads it.
            log.critical("writer_died", error=repr(exc), commands=len(group))
            self._groups.clear_cache()
            fail_unanswered(group, StoreUnavailable("the writer restarted; retry with the same key"))
            raise
