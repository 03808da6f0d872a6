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
commands again, at most ``max_attempts`` times, then answers :class:`Contended` (gRPC ``ABORTED``). A retried
idempotency key that another replica recorded in the meantime is found on the next attempt and answered with
the first answer.

Queries go through the writer too (:class:`Peek`): it applies what fell due, then answers with a private copy
of the cached state, so a read after a write that returned sees that write.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from ledger.application.deadline import deadline_after
from ledger.application.results import CommandResult, fingerprint
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, household, next_due, tick
from ledger.domain.decide.earning import names_an_invitee, quote
from ledger.domain.decide.members import merge
from ledger.domain.errors import Conflict, DomainError, NotFound, Refusal
from ledger.domain.evolve import evolve
from ledger.domain.queries import tier_in_effect
from ledger.domain.state import Balances, MemberState
from ledger.domain.stock import StockEvent, StockState, adjust, evolve_stock, movement
from ledger.domain.stock import decode as decode_stock
from ledger.domain.stock import encode as encode_stock
from ledger.domain.streams import member_stream, stock_stream
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    EventStore,
    NewEvent,
    StoredEvent,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
)
from policies import NoPolicyInForce, Policy, PolicyHistory

log = structlog.get_logger("ledger.writer")

SCHEMA_VERSION = 1


class Overloaded(Exception):
    """The write queue is full; the caller should back off and retry (RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str = "the write queue is full", retry_after: float = 0.1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The call's deadline passed before the write was answered (DEADLINE_EXCEEDED; retry with the same key)."""


class StoreUnavailable(Exception):
    """The group could not be committed; nothing of it was written (UNAVAILABLE, safe to retry)."""


class Contended(Exception):
    """Another replica kept writing the same members; after the bounded retries nothing was written (ABORTED)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """A request for what a purchase would earn (decided by the writer so it sees the latest state)."""

    program_id: str
    command: cmd.RecordPurchase
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class Peek:
    """A request for a member's state now (due work applied first), answered with a private copy."""

    program_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class PeekResult:
    state: MemberState
    now: datetime


Request = cmd.Envelope | Quote | Peek


@dataclass(slots=True)
class _Pending:
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


@dataclass(slots=True)
class _Staged:
    program_id: str
    member_id: str
    state: MemberState
    expected_version: int
    events: list[AppliedEvent] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _StockStaged:
    """A reward's stock stream as this group found it, and the stock events the group's exchanges add to it."""

    state: StockState
    expected_version: int
    events: list[NewEvent] = field(default_factory=list)


class ProgramDirectory:
    """What the writer needs to know of programs: their policies, their clock, their identities."""

    def context(
        self, program_id: str, occurred_at: datetime | None, member_id: str, *, look_up_profile: bool = True
    ) -> Context:
        raise NotImplementedError

    def identity_owner(self, program_id: str, identity: str) -> str | None:
        raise NotImplementedError

    def refresh(self, program_ids: set[str]) -> None:
        """Bring these programs up to date with the log (other replicas may have changed them)."""


ProjectionHook = Callable[[Any, list[StoredEvent], Sequence["MemberChange"]], None]

GroupObserver = Callable[[int, float, str], None]
"""Told once per group that went to the store: its commands, the seconds the append took, and the outcome:
``committed``, ``conflict`` (another replica got there first; decided again) or ``store_error``."""

@dataclass(frozen=True, slots=True)
class GroupPhases:
    """When the writer worked on the group that answered a request, for traces: plain ``time.time_ns()`` pairs
    (start, end), never anything of the commands. ``decide``: from taking the group (or deciding it again after a
    conflict: ``attempt``) to having decided every command, the recorded keys and the members' tails read;
    ``append``: the store's append and commit (None: the group wrote nothing, as for reads and known keys);
    ``project``: writing the read models, inside the append's transaction (``projected_in_append``: SQLite,
    PostgreSQL) or right after the commit (KurrentDB, ``memory://``)."""

    commands: int
    attempt: int
    decide: tuple[int, int]
    append: tuple[int, int] | None = None
    project: tuple[int, int] | None = None
    projected_in_append: bool = False


PhaseSink = Callable[[GroupPhases], None]
"""Told, on the caller's thread after its answer, of the phases of each group that answered its requests."""

WaitObserver = Callable[[int, int], AbstractContextManager[PhaseSink | None]]
"""Around a caller's wait for the writer (traces): given the requests and how many were queued before them; what
it enters as (None: nothing) is told the phases of the groups that answered. While one is set, the writer times
each group's phases (a few clock reads per group, none per command)."""


AppliedEvent = tuple[ev.MemberEvent, NewEvent, Balances, Balances, str]
"""An event as the writer applied it: the event, as appended, the balances before and after, the tier after."""


def _policy_at(policies: PolicyHistory, at: datetime) -> Policy | None:
    try:
        return policies.in_force_at(at).policy
    except NoPolicyInForce:
        return None


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One member touched by a committed group: its state after, and the events with balances around them."""

    program_id: str
    member_id: str
    state: MemberState
    events: tuple[AppliedEvent, ...]
    identities_added: tuple[str, ...]
    due_at: datetime | None


class CommandWriter:
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
        max_attempts: int = 5,
        project_in_transaction: bool | None = None,
    ) -> None:
        self._store = store
        # False: the store cannot run hooks in its transaction (KurrentDB); ``project`` is then called after the
        # append committed with ``tx=None`` and opens its own read-model transaction. None: ask the store.
        self._in_transaction = (
            bool(getattr(store, "supports_in_transaction", True))
            if project_in_transaction is None
            else project_in_transaction
        )
        self._shared = shared
        self._max_attempts = max_attempts
        self._programs = programs
        self._project = project
        self._max_batch = max_batch
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_queue)
        self._cache: OrderedDict[str, MemberState] = OrderedDict()
        self._cache_size = cache_size
        self._fresh: dict[str, MemberState] = {}  # this group's members, up to date (writer thread only)
        self._stock_cache: dict[str, StockState] = {}  # rewards' stock streams as last committed (writer thread)
        self._stock: dict[str, _StockStaged] = {}  # this group's stock streams (writer thread only)
        self._claimed: dict[tuple[str, str], str] = {}  # identities this group gave a member: (program, identity)
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
            self._fresh = {}
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
            return self._submit(requests, timeout, wait_for_room, with_state)
        with observe(len(requests), self._queue.qsize()) as report:
            return self._submit(requests, timeout, wait_for_room, with_state, report)

    def _submit(
        self,
        requests: Sequence[Request],
        timeout: float,
        wait_for_room: bool,
        with_state: bool,
        report: PhaseSink | None = None,
    ) -> list[Any]:
        deadline = deadline_after(timeout)
        pendings = [_Pending(r, deadline, with_state) for r in requests]
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

    def _wait(self, p: _Pending) -> None:
        """Wait for ``p``'s answer until its deadline; answer UNAVAILABLE early once the store is known down."""
        while not p.done.wait(min(0.05, max(p.deadline - time.monotonic(), 0.0))):
            if self.store_down:
                raise StoreUnavailable("the store is unreachable; the write may or may not have been applied")
            if time.monotonic() >= p.deadline:
                raise DeadlineExceeded("the write was not answered before the deadline")

    @property
    def queued(self) -> int:
        """Requests waiting for the writer."""
        return self._queue.qsize()

    def fail_queued(self, error: BaseException) -> int:
        """Answer every request still waiting in the queue with ``error`` (none of them was decided)."""
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

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    def forget(self, stream_id: str | None = None) -> None:
        """Drop cached states (all, or one stream) so they are loaded from the log again."""
        with self.lock:
            if stream_id is None:
                self._cache.clear()
            else:
                self._cache.pop(stream_id, None)

    # -- the writer thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                group.append(nxt)
            now = time.monotonic()
            late = [p for p in group if p.deadline <= now]
            for p in late:  # its caller has given up: deciding it now would apply a write nobody waits for
                p.fail(DeadlineExceeded("the deadline passed before the write was decided; nothing was written"))
            group = [p for p in group if p.deadline > now]
            if not group:
                continue
            with self.lock:
                try:
                    self._process(group)
                except StoreError as exc:  # reading the log failed: nothing of the group was written
                    log.error("group_not_decided", error=repr(exc), commands=len(group))
                    self._cache.clear()
                    self._abort(group, {}, StoreUnavailable(f"the store could not be read: {exc}"))
                except Exception as exc:  # never let one group stop the writer: fail what is unanswered
                    log.exception("group_failed", error=repr(exc), commands=len(group))
                    self._cache.clear()
                    self._abort(group, {}, exc)
                except BaseException as exc:
                    # The thread is going down (the supervisor starts another one): its callers must not wait
                    # for an answer that never comes. What it committed is in the log; the next thread reads it.
                    log.critical("writer_died", error=repr(exc), commands=len(group))
                    self._cache.clear()
                    self._abort(group, {}, StoreUnavailable("the writer restarted; retry with the same key"))
                    raise

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the writer (approximate, as queue sizes are)."""
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        """False once the writer thread has ended (stopped, or died): nothing more will be written."""
        return self._thread.is_alive()

    def _process(self, group: list[_Pending], attempt: int = 1) -> None:
        decided_from = time.time_ns() if self.on_wait is not None else 0  # traces: GroupPhases
        if self._shared:
            self._programs.refresh({p.request.program_id for p in group})
        self._prefetch(group)
        self._stock = {}
        staged: dict[str, _Staged] = {}
        records: list[CommandRecord] = []
        answered: list[tuple[_Pending, Any]] = []
        keys: dict[tuple[str, str], tuple[str, _Pending]] = {}
        followers: list[tuple[_Pending, _Pending]] = []
        recorded = self._store.find_commands(
            [
                (p.request.program_id, p.request.idempotency_key)
                for p in group
                if isinstance(p.request, cmd.Envelope) and p.request.idempotency_key
            ]
        )
        for p in group:
            try:
                req = p.request
                if isinstance(req, Quote):
                    answered.append((p, self._quote(req, staged)))
                    continue
                if isinstance(req, Peek):
                    answered.append((p, self._peek(req, staged)))
                    continue
                if req.idempotency_key:
                    fp = fingerprint(req)
                    k = (req.program_id, req.idempotency_key)
                    if k in keys:
                        first_fp, leader = keys[k]
                        if first_fp != fp:
                            raise Conflict(f"idempotency key {req.idempotency_key!r} was used for a different request")
                        followers.append((p, leader))
                        continue
                    found = recorded.get(k)
                    if found is not None:
                        if found.fingerprint != fp:
                            raise Conflict(f"idempotency key {req.idempotency_key!r} was used for a different request")
                        answered.append((p, CommandResult.from_bytes(found.response)))
                        continue
                    keys[k] = (fp, p)
                result, payloads = self._stage(req, staged, with_state=p.with_state)
                if req.idempotency_key:
                    records.append(
                        CommandRecord(
                            program_id=req.program_id,
                            idempotency_key=req.idempotency_key,
                            fingerprint=keys[(req.program_id, req.idempotency_key)][0],
                            response=result.to_bytes(payloads),
                            recorded_at=result.recorded_at,
                            stream_id=(
                                stock_stream(req.program_id, req.command.reward_id)
                                if isinstance(req.command, cmd.AdjustStock)
                                else member_stream(req.program_id, result.member_id)
                            ),
                        )
                    )
                answered.append((p, result))
            except DomainError as exc:
                p.fail(exc)
            except StoreError:
                raise  # the store, not this command: the whole group fails as UNAVAILABLE (see _run)
            except Exception as exc:
                # A bug or a broken invariant while deciding this one command: it fails alone. What the group
                # staged so far may hold part of its effects, so the cached states it touched are dropped and
                # the other unanswered commands are decided again without it (each round removes one command).
                log.exception("command_failed", error=repr(exc), command=type(getattr(req, "command", req)).__name__)
                p.fail(exc)
                for stream_id in staged:
                    self._cache.pop(stream_id, None)
                self._stock_cache.clear()
                rest = [q for q in group if not q.done.is_set()]
                if rest:
                    self._process(rest, attempt)
                return
        self._commit(group, staged, records, answered, followers, attempt, decided_from)

    @staticmethod
    def _observe(observe: GroupObserver, commands: int, started: float, outcome: str) -> None:
        try:
            observe(commands, time.perf_counter() - started, outcome)
        except Exception as exc:  # metrics must never fail a write that happened
            log.warning("group_observer_failed", error=repr(exc))

    def _abort(self, group: list[_Pending], staged: dict[str, _Staged], exc: BaseException) -> None:
        for stream_id in staged:
            self._cache.pop(stream_id, None)
        self._stock_cache.clear()
        for p in group:
            if not p.done.is_set():
                p.fail(exc)

    def _commit(
        self,
        group: list[_Pending],
        staged: dict[str, _Staged],
        records: list[CommandRecord],
        answered: list[tuple[_Pending, Any]],
        followers: list[tuple[_Pending, _Pending]],
        attempt: int,
        decided_from: int = 0,
    ) -> None:
        # Traces (``decided_from`` set): the group's phases, as time.time_ns() pairs; off, a few falsy checks.
        decided_to = time.time_ns() if decided_from else 0
        appended: tuple[int, int] | None = None
        projected = [0, 0]
        appends = [
            StreamAppend(stream_id=sid, expected_version=s.expected_version, events=[e[1] for e in s.events])
            for sid, s in staged.items()
            if s.events
        ] + [
            # A reward's stock moves in the same atomic append as the members' events, at the version it was
            # decided on: a unit taken meanwhile (another replica) refuses the group, which is decided again.
            StreamAppend(stream_id=sid, expected_version=k.expected_version, events=list(k.events))
            for sid, k in self._stock.items()
            if k.events
        ]
        if appends or records:
            changes = [
                MemberChange(
                    program_id=s.program_id,
                    member_id=s.member_id,
                    state=s.state,
                    events=tuple(s.events),
                    identities_added=tuple(s.identities),
                    due_at=next_due(s.state, self._context(s, None)),
                )
                for s in staged.values()
                if s.events
            ]
            batch = AppendBatch(appends=appends, commands=records)
            stored: list[StoredEvent] = []
            observe = self.on_group

            def project_in_transaction(tx: Any, events: list[StoredEvent]) -> None:
                if decided_from:
                    projected[0] = time.time_ns()
                self._project(tx, events, changes)
                if decided_from:
                    projected[1] = time.time_ns()

            append_from = time.time_ns() if decided_from else 0
            started = time.perf_counter()
            try:
                if self._in_transaction:
                    self._store.append(batch, in_transaction=project_in_transaction)
                else:
                    stored = self._store.append(batch)
            except (WrongExpectedVersion, DuplicateCommand) as exc:
                if observe is not None:
                    self._observe(observe, len(group), started, "conflict")
                # Another replica wrote one of these members (or recorded one of these keys) since we loaded
                # them: nothing of ours was written. Decide again from the log, a bounded number of times.
                for stream_id in staged:
                    self._cache.pop(stream_id, None)
                self._stock_cache.clear()
                unanswered = [p for p in group if not p.done.is_set()]
                if attempt < self._max_attempts:
                    log.info("group_retried", error=repr(exc), attempt=attempt, commands=len(unanswered))
                    self._process(unanswered, attempt + 1)
                else:
                    log.warning("group_contended", error=repr(exc), attempts=attempt, commands=len(unanswered))
                    self._abort(unanswered, {}, Contended(f"gave up after {attempt} conflicting attempts: {exc}"))
                return
            except Exception as exc:
                if observe is not None:
                    self._observe(observe, len(group), started, "store_error")
                log.error("group_not_committed", error=repr(exc), commands=len(group))
                self._abort(group, staged, StoreUnavailable(f"the write was not committed: {exc}"))
                return
            if observe is not None:
                self._observe(observe, len(group), started, "committed")
            if decided_from:
                appended = (append_from, time.time_ns())
            if not self._in_transaction and stored:
                # The events are committed: project them now (tx=None: in a read-model transaction of the
                # hook's own), before answering, so a read after the answer sees them. If that fails the
                # answer still goes out (the write happened) and the cache below stays in step with the log;
                # the read models lag until the projection runner catches them up (the next projection
                # notices the gap before the checkpoint and runs it; so does the next startup).
                if decided_from:
                    projected[0] = time.time_ns()
                try:
                    self._project(None, stored, changes)
                except Exception as exc:
                    log.error("projection_failed_after_commit", error=repr(exc), events=len(stored))
                if decided_from:
                    projected[1] = time.time_ns()
        if decided_from:
            phases = GroupPhases(
                len(group), attempt, (decided_from, decided_to), appended,
                (projected[0], projected[1]) if projected[1] else None, self._in_transaction,
            )  # fmt: skip
            for p, _ in answered:
                p.phases = phases
            for follower, _ in followers:
                follower.phases = phases
        for sid, s in staged.items():
            if s.state.enrolled:
                self._remember(sid, s.state)
        for sid, k in self._stock.items():
            self._stock_cache[sid] = k.state
        for p, result in answered:
            p.resolve(result)
        for follower, leader in followers:
            if leader.error is not None:
                follower.fail(leader.error)
            else:
                r = leader.result
                follower.resolve(
                    CommandResult(r.program_id, r.member_id, r.events, r.version, r.balance, r.recorded_at, True, r.extra)
                )

    # -- deciding one command -------------------------------------------------------------------------------

    def _remember(self, stream_id: str, state: MemberState) -> None:
        self._cache[stream_id] = state
        self._cache.move_to_end(stream_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _prefetch(self, group: list[_Pending]) -> None:
        """Bring the states of every member the group touches up to date with the log, in one read.

        Members not cached are folded from their whole stream; on a shared store, cached members get the
        events other replicas appended since (usually none). Either way it is one ``read_tails`` call.
        """
        wanted: dict[str, tuple[str, str]] = {}
        for p in group:
            req = p.request
            if isinstance(req, Peek):
                members: tuple[str, ...] = (req.member_id,)
            elif isinstance(req, Quote):
                members = (req.command.member_id,)
            elif isinstance(req.command, cmd.MergeMembers):
                members = (req.command.member_id, req.command.source_member_id)
            elif isinstance(req.command, cmd.JoinHousehold):
                members = (req.command.member_id, req.command.owner_member_id)
            elif isinstance(req.command, cmd.TransferPoints):
                members = (req.command.member_id, req.command.to_member_id)
            elif isinstance(req.command, cmd.AdjustStock):
                continue  # no member: the reward's stock stream is read when the command is decided
            else:
                members = (req.command.member_id,)
            for member_id in members:
                wanted[member_stream(req.program_id, member_id)] = (req.program_id, member_id)
        fresh: dict[str, MemberState] = {}
        after: dict[str, int] = {}
        for sid, (program_id, member_id) in wanted.items():
            state = self._cache.get(sid) or MemberState(program_id=program_id, member_id=member_id)
            fresh[sid] = state
            if state.version == 0 or self._shared:
                after[sid] = state.version
        if after:
            for sid, tail in self._store.read_tails(after).items():
                state = fresh[sid]
                for stored in tail:
                    evolve(state, ev.decode(stored.payload))
        self._fresh = fresh
        self._claimed = {}

    def _load(self, program_id: str, member_id: str, staged: dict[str, _Staged]) -> _Staged:
        sid = member_stream(program_id, member_id)
        if sid in staged:
            return staged[sid]
        state = self._fresh.get(sid)
        if state is None:  # not named by the request itself: read it now
            state = self._cache.get(sid) or MemberState(program_id=program_id, member_id=member_id)
            for stored in self._store.read_stream(sid, after_version=state.version):
                evolve(state, ev.decode(stored.payload))
        s = _Staged(program_id, member_id, state, state.version)
        staged[sid] = s
        return s

    def _apply(self, s: _Staged, events: Sequence[ev.MemberEvent], req: cmd.Envelope | None, ctx: Context) -> None:
        now = ctx.now
        for event in events:
            before = Balances.of(s.state)
            evolve(s.state, event)
            after = Balances.of(s.state)
            tier = tier_in_effect(s.state, _policy_at(ctx.policies, event.at), event.at)
            new = NewEvent(
                event_id=str(uuid.uuid4()),
                type=event.type,
                schema_version=SCHEMA_VERSION,
                occurred_at=event.at,
                recorded_at=now,
                policy_version=getattr(event, "policy_version", None),
                idempotency_key=(req.idempotency_key or None) if req else None,
                correlation_id=req.correlation_id if req else None,
                causation_id=None,
                actor=req.actor.as_dict() if req else {"channel": "system"},
                payload=ev.encode(event),
            )
            s.events.append((event, new, before, after, tier))

    def _context(self, s: _Staged, occurred_at: datetime | None) -> Context:
        """The member's context; its personal data is looked up only if enrolment may have stored some."""
        return self._programs.context(
            s.program_id, occurred_at, s.member_id, look_up_profile=not s.state.no_profile
        )

    def _catch_up(self, s: _Staged, ctx: Context) -> list[ev.MemberEvent]:
        due = tick(s.state, ctx.for_time(ctx.now))
        if due:
            self._apply(s, due, None, ctx)
        return due

    def _quote(self, req: Quote, staged: dict[str, _Staged]) -> Any:
        s = self._load(req.program_id, req.command.member_id, staged)
        ctx = self._context(s, req.occurred_at)
        if not s.state.enrolled:
            raise NotFound("member", req.command.member_id)
        self._catch_up(s, ctx)
        return quote(req.command, s.state, ctx)

    def _peek(self, req: Peek, staged: dict[str, _Staged]) -> PeekResult:
        s = self._load(req.program_id, req.member_id, staged)
        ctx = self._context(s, None)
        if not s.state.enrolled:
            raise NotFound("member", req.member_id)
        self._catch_up(s, ctx)
        return PeekResult(s.state.clone(), ctx.now)

    def _stage(
        self, req: cmd.Envelope, staged: dict[str, _Staged], *, with_state: bool = False
    ) -> tuple[CommandResult, list[bytes] | None]:
        """Decide one command and apply its events; the result, and the payloads of its events as encoded for
        the log (None if they are not at hand) so that the recorded answer does not encode them again."""
        command = req.command
        if isinstance(command, cmd.AdjustStock):
            return self._stage_stock(req, command), None
        s = self._load(req.program_id, command.member_id, staged)
        ctx = self._context(s, req.occurred_at)
        start = len(s.events)
        extra: dict[str, Any] = {}
        caught_up = self._catch_up(s, ctx)
        if isinstance(command, cmd.EnrollMember | cmd.ImportMember):
            self._check_identities(req.program_id, command)
        if isinstance(command, cmd.MergeMembers):
            source = self._load(req.program_id, command.source_member_id, staged)
            self._catch_up(source, self._context(source, req.occurred_at))
            target_events, source_events = merge(command, s.state, source.state, ctx)
            self._apply(source, source_events, req, ctx)
            start = len(s.events)
            self._apply(s, target_events, req, ctx)
            s.identities.extend(source.state.identities)  # the source's cards now find the survivor
            self._claimed.update(((req.program_id, i), s.member_id) for i in source.state.identities)
            produced: list[ev.MemberEvent] = target_events
        elif isinstance(command, cmd.JoinHousehold | cmd.LeaveHousehold | cmd.TransferPoints):
            produced, extra = self._stage_household(req, command, s, ctx, staged)
            start = len(s.events) - len(produced)
        elif isinstance(command, cmd.ExchangePoints | cmd.CancelExchange):
            stock = self._stock_of(req.program_id, command, s.state)
            if stock is not None:
                ctx = replace(ctx, stock=stock.state)
            produced = decide(command, s.state, ctx)
            start = len(s.events)
            self._apply(s, produced, req, ctx)
            self._apply_stock(req, s.member_id, produced, ctx.now)
        elif isinstance(command, cmd.Tick):
            if not s.state.enrolled:
                raise NotFound("member", command.member_id)
            produced = caught_up
        else:
            if isinstance(command, cmd.AwardPoints) and names_an_invitee(command, ctx):
                invitee = self._load(req.program_id, command.reference, staged)
                ctx = replace(ctx, invitee=invitee.state if invitee.state.enrolled else None)
            produced = decide(command, s.state, ctx)
            if isinstance(command, cmd.EnrollMember | cmd.ImportMember):
                s.identities.extend(command.identities)
                self._claimed.update(((req.program_id, i), s.member_id) for i in command.identities)
            start = len(s.events)
            growth_before = len(s.state.growth)
            self._apply(s, produced, req, ctx)
            if len(s.state.growth) > growth_before and household.counts_growth_to_owner(s.state, ctx):
                self._count_household_growth(req, s, s.state.growth[growth_before:], staged)
        applied = s.events[start:]
        payloads: list[bytes] | None = [a[1].payload for a in applied]
        if len(applied) != len(produced) or any(a[0] is not e for a, e in zip(applied, produced, strict=False)):
            payloads = None
        result = CommandResult(
            program_id=req.program_id,
            member_id=command.member_id,
            events=tuple(produced),
            version=s.state.version,
            balance=Balances.of(s.state),
            recorded_at=ctx.now,
            extra=extra,
            state_after=s.state.clone() if with_state else None,
        )
        return result, payloads

    def _stage_household(
        self,
        req: cmd.Envelope,
        command: cmd.JoinHousehold | cmd.LeaveHousehold | cmd.TransferPoints,
        s: _Staged,
        ctx: Context,
        staged: dict[str, _Staged],
    ) -> tuple[list[ev.MemberEvent], dict[str, Any]]:
        """A household command: decided on the member's state and the other member's it names (the owner for a
        join or a leave, the receiver for a transfer), both ticked up to now; the events of both streams are
        applied here and go out in the group's one atomic append, at the versions they were decided on.

        Returns the member's events, and for a transfer the receiver's lots (``extra["received"]``, kept with the
        answer so a retry gives them too)."""
        if isinstance(command, cmd.LeaveHousehold):
            owner_id = s.state.household_of if s.state.enrolled and s.state.merged_into is None else None
            other_id = owner_id if owner_id is not None and owner_id != s.member_id else None
        elif isinstance(command, cmd.JoinHousehold):
            other_id = command.owner_member_id
        else:
            other_id = command.to_member_id
        if other_id is None or other_id == s.member_id:
            if not s.state.enrolled:
                raise NotFound("member", command.member_id)
            if isinstance(command, cmd.LeaveHousehold):
                mine, theirs = household.leave(command, s.state, None, ctx)
            elif isinstance(command, cmd.JoinHousehold):
                mine, theirs = household.join(command, s.state, s.state, ctx)
            else:
                mine, theirs = household.transfer(command, s.state, s.state, ctx)
            self._apply(s, mine, req, ctx)
            return mine, {}
        other = self._load(req.program_id, other_id, staged)
        if other.state.enrolled:
            self._catch_up(other, self._context(other, req.occurred_at))
        if not s.state.enrolled:
            raise NotFound("member", command.member_id)
        if isinstance(command, cmd.LeaveHousehold):
            mine, theirs = household.leave(command, s.state, other.state, ctx)
        elif isinstance(command, cmd.JoinHousehold):
            mine, theirs = household.join(command, s.state, other.state, ctx)
        else:
            mine, theirs = household.transfer(command, s.state, other.state, ctx)
        self._apply(s, mine, req, ctx)
        self._apply(other, theirs, req, ctx)
        received = [
            {"lot_id": t.lot_id, "source_lot_id": t.source_lot_id, "points": t.points,
             "arrears_repaid": t.arrears_repaid, "expires_at": t.expires_at.isoformat()}
            for e in theirs if isinstance(e, ev.PointsTransferredIn) for t in e.lots
        ]  # fmt: skip
        return mine, ({"received": received} if received else {})

    def _count_household_growth(
        self, req: cmd.Envelope, s: _Staged, entries: list[Any], staged: dict[str, _Staged]
    ) -> None:
        """Growth a household member just earned or had taken back, counted on its owner's stream too (the
        policy's ``household.growth_to_owner``), in the same atomic append, with the upgrade it causes."""
        owner_id = s.state.household_of
        assert owner_id is not None
        owner = self._load(req.program_id, owner_id, staged)
        octx = self._context(owner, req.occurred_at)
        self._catch_up(owner, octx)
        events = household.count_growth(owner.state, s.member_id, list(entries), octx)
        if events:
            self._apply(owner, events, req, octx)

    def _stock_of(
        self, program_id: str, command: cmd.ExchangePoints | cmd.CancelExchange, state: MemberState
    ) -> _StockStaged | None:
        """The stock stream an exchange (of its reward) or a cancellation (of the exchange's) moves, brought up to
        date with the log: the cached fold plus whatever was appended since (by another replica, on a shared
        store). Loaded once per group, so exchanges in one group see each other's units."""
        if isinstance(command, cmd.ExchangePoints):
            sid = stock_stream(program_id, command.reward_id)
        else:
            x = state.exchanges.get(command.exchange_id)
            if x is None or x.stock_stream is None:
                return None
            sid = x.stock_stream
        return self._stock_stream(sid)

    def _stock_stream(self, sid: str) -> _StockStaged:
        found = self._stock.get(sid)
        if found is not None:
            return found
        cached = self._stock_cache.get(sid)
        stock = cached.copy() if cached is not None else StockState(sid)
        for stored in self._store.read_stream(sid, after_version=stock.version):
            evolve_stock(stock, decode_stock(stored.payload))
        found = self._stock[sid] = _StockStaged(stock, stock.version)
        return found

    def _apply_stock(self, req: cmd.Envelope, member_id: str, events: Sequence[ev.MemberEvent], now: datetime) -> None:
        for event in events:
            moved = movement(member_id, event, event.at)
            if moved is None:
                continue
            sid, stock_event = moved
            self._append_stock(req, self._stock[sid], stock_event, now)

    def _stage_stock(self, req: cmd.Envelope, command: cmd.AdjustStock) -> CommandResult:
        """An operator's stock adjustment: decided on the reward's stock stream alone (no member is touched)."""
        ctx = self._programs.context(req.program_id, req.occurred_at, "", look_up_profile=False)
        k = self._stock_stream(stock_stream(req.program_id, command.reward_id))
        event = adjust(command, k.state, ctx.version, ctx.at)
        self._append_stock(req, k, event, ctx.now)
        return CommandResult(
            program_id=req.program_id,
            member_id="",
            events=(),
            version=k.state.version,
            balance=Balances(0, 0, 0, 0),
            recorded_at=ctx.now,
            extra={"reward_id": command.reward_id, "units": command.units, "stock_left": event.stock_left_after},
        )

    def _append_stock(self, req: cmd.Envelope, k: _StockStaged, stock_event: StockEvent, now: datetime) -> None:
        evolve_stock(k.state, stock_event)
        k.events.append(
            NewEvent(
                event_id=str(uuid.uuid4()),
                type=stock_event.type,
                schema_version=SCHEMA_VERSION,
                occurred_at=stock_event.at,
                recorded_at=now,
                policy_version=None,
                idempotency_key=req.idempotency_key or None,
                correlation_id=req.correlation_id,
                causation_id=None,
                actor=req.actor.as_dict(),
                payload=encode_stock(stock_event),
            )
        )

    def _check_identities(self, program_id: str, command: cmd.EnrollMember | cmd.ImportMember) -> None:
        for identity in command.identities:
            owner = self._programs.identity_owner(program_id, identity)
            if owner is None:  # given by a command of this group (staged, not committed yet)
                owner = self._claimed.get((program_id, identity))
            if owner is not None and owner != command.member_id:
                raise Refusal(
                    "IDENTITY_TAKEN",
                    "this channel identity already belongs to another member",
                    {"kind": identity.split(":", 1)[0].upper(), "member_id": owner},
                )
