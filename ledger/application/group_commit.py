"""The group commit: a group of requests decided in order, appended in one store transaction, then answered.

For each command of the group the idempotency key is checked first (a key recorded before answers with its
first answer; a key repeated within the group follows its first use); then the command is staged
(:mod:`command_staging`). Every staged stream, member and stock, goes out in one atomic append with the
commands' records, at the versions they were decided on; the read models are written in the same transaction
(SQLite, PostgreSQL) or right after the commit (KurrentDB, ``memory://``). Only then are the callers answered.

If another replica wrote one of the streams meanwhile the store refuses the whole group; the unanswered requests
are decided again from the log under the write path's one retry policy (:mod:`~ledger.application.retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ledger.application.command_staging import stage_command, stage_peek, stage_quote
from ledger.application.idempotency import fingerprint, same_request
from ledger.application.member_staging import GroupStaging, MemberCache, MemberChange
from ledger.application.ports import ProgramDirectory
from ledger.application.results import CommandResult
from ledger.application.retry import CONFLICTS, WriteRetry
from ledger.application.stock_staging import StockStaging
from ledger.application.write_queue import Pending
from ledger.application.write_requests import (
    GroupObserver,
    GroupPhases,
    Peek,
    Quote,
    StoreUnavailable,
)
from ledger.domain import commands as cmd
from ledger.domain.errors import Conflict, DomainError
from ledger.domain.stock import StockState
from ledger.domain.streams import member_stream, stock_stream
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    EventStore,
    StoredEvent,
    StoreError,
    StreamAppend,
)

log = structlog.get_logger("ledger.writer")

ProjectionHook = Callable[[Any, list[StoredEvent], Sequence[MemberChange]], None]
"""Writes the read models for a committed group: the store's transaction (None: open one of its own), the
stored events, the members changed."""


@dataclass(slots=True)
class _Decided:
    """A group decided: the commands' records to append, the answers to give after the commit, and the requests
    that repeat a key used earlier in the group (answered with their leader's answer)."""

    records: list[CommandRecord] = field(default_factory=list)
    answered: list[tuple[Pending, Any]] = field(default_factory=list)
    followers: list[tuple[Pending, Pending]] = field(default_factory=list)
    keys: dict[tuple[str, str], tuple[str, Pending]] = field(default_factory=dict)


@dataclass(slots=True)
class _Timing:
    """The group's phases as ``time.time_ns()`` readings, taken only while traces are on (``on``)."""

    on: bool
    decided_from: int = 0
    decided_to: int = 0
    appended: tuple[int, int] | None = None
    projected: list[int] = field(default_factory=lambda: [0, 0])

    def now(self) -> int:
        return time.time_ns() if self.on else 0


class GroupCommit:
    """Decides and commits the writer's groups (called on the writer thread, under its lock)."""

    def __init__(
        self,
        store: EventStore[Any],
        programs: ProgramDirectory,
        project: ProjectionHook,
        cache: MemberCache,
        *,
        shared: bool,
        retry: WriteRetry,
        in_transaction: bool,
    ) -> None:
        self._store = store
        self._programs = programs
        self._project = project
        self._cache = cache
        self._stock_cache: dict[str, StockState] = {}  # rewards' stock streams as last committed
        self._shared = shared
        self._retry = retry
        self._in_transaction = in_transaction

    def clear_cache(self) -> None:
        """Forget every cached state (members and stock): they are folded from the log again."""
        self._cache.clear()
        self._stock_cache.clear()

    def run(
        self, group: list[Pending], *, timed: bool, observe: GroupObserver | None, attempt: int = 1
    ) -> None:
        """Decide ``group`` and commit it; every request of it is answered (or failed) when this returns."""
        timing = _Timing(timed)
        timing.decided_from = timing.now()
        if self._shared:
            self._programs.refresh({p.request.program_id for p in group})
        staging = GroupStaging(
            self._store,
            self._programs,
            self._cache,
            StockStaging(self._store, self._stock_cache),
            shared=self._shared,
        )
        staging.prefetch(p.request for p in group)
        decided = self._decide(group, staging, attempt, timed, observe)
        if decided is not None:
            self._commit(group, staging, decided, attempt, timing, observe)

    # -- deciding -------------------------------------------------------------------------------------------

    def _decide(
        self,
        group: list[Pending],
        staging: GroupStaging,
        attempt: int,
        timed: bool,
        observe: GroupObserver | None,
    ) -> _Decided | None:
        """Decide each request in order; None if one failed unexpectedly and the rest were run again without it."""
        decided = _Decided()
        recorded = self._store.find_commands(
            [
                (p.request.program_id, p.request.idempotency_key)
                for p in group
                if isinstance(p.request, cmd.Envelope) and p.request.idempotency_key
            ]
        )
        for p in group:
            req = p.request
            try:
                if isinstance(req, Quote):
                    decided.answered.append((p, stage_quote(staging, req)))
                elif isinstance(req, Peek):
                    decided.answered.append((p, stage_peek(staging, req)))
                elif not self._known_key(p, req, recorded, decided):
                    self._stage(p, req, staging, decided)
            except DomainError as exc:
                p.fail(exc)
            except StoreError:
                raise  # the store, not this command: the whole group fails as UNAVAILABLE (see the writer)
            except Exception as exc:
                # A bug or a broken invariant while deciding this one command: it fails alone. What the group
                # staged so far may hold part of its effects, so the cached states it touched are dropped and
                # the other unanswered commands are decided again without it (each round removes one command).
                log.exception(
                    "command_failed", error=repr(exc), command=type(getattr(req, "command", req)).__name__
                )
                p.fail(exc)
                staging.drop_cached()
                rest = [q for q in group if not q.done.is_set()]
                if rest:
                    self.run(rest, timed=timed, observe=observe, attempt=attempt)
                return None
        return decided

    @staticmethod
    def _known_key(
        p: Pending, req: cmd.Envelope, recorded: dict[tuple[str, str], Any], decided: _Decided
    ) -> bool:
        """Whether ``req``'s idempotency key is answered without deciding it: recorded before (its first
        answer), or used earlier in this group (it follows that request). A key used for another request is
        refused (:class:`Conflict`). A new key is noted with its fingerprint."""
        if not req.idempotency_key:
            return False
        fp = fingerprint(req)
        k = (req.program_id, req.idempotency_key)
        if k in decided.keys:
            first_fp, leader = decided.keys[k]
            if first_fp != fp:
                raise Conflict(f"idempotency key {req.idempotency_key!r} was used for a different request")
            decided.followers.append((p, leader))
            return True
        found = recorded.get(k)
        if found is not None:
            if not same_request(found.fingerprint, req):
                raise Conflict(f"idempotency key {req.idempotency_key!r} was used for a different request")
            decided.answered.append((p, CommandResult.from_bytes(found.response)))
            return True
        decided.keys[k] = (fp, p)
        return False

    @staticmethod
    def _stage(p: Pending, req: cmd.Envelope, staging: GroupStaging, decided: _Decided) -> None:
        result, payloads = stage_command(staging, req, with_state=p.with_state)
        if req.idempotency_key:
            decided.records.append(
                CommandRecord(
                    program_id=req.program_id,
                    idempotency_key=req.idempotency_key,
                    fingerprint=decided.keys[(req.program_id, req.idempotency_key)][0],
                    response=result.to_bytes(payloads),
                    recorded_at=result.recorded_at,
                    stream_id=(
                        stock_stream(req.program_id, req.command.reward_id)
                        if isinstance(req.command, cmd.AdjustStock)
                        else member_stream(req.program_id, result.member_id)
                    ),
                )
            )
        decided.answered.append((p, result))

    # -- committing -----------------------------------------------------------------------------------------

    def _commit(
        self,
        group: list[Pending],
        staging: GroupStaging,
        decided: _Decided,
        attempt: int,
        timing: _Timing,
        observe: GroupObserver | None,
    ) -> None:
        timing.decided_to = timing.now()
        appends = [
            StreamAppend(stream_id=sid, expected_version=s.expected_version, events=[e[1] for e in s.events])
            for sid, s in staging.members.items()
            if s.events
        ] + staging.stock.appends()  # a reward's stock moves in the same atomic append as the members' events
        if appends or decided.records:
            batch = AppendBatch(appends=appends, commands=decided.records)
            if not self._append(group, staging, batch, attempt, timing, observe):
                return
        if timing.on:
            self._tell_phases(group, decided, attempt, timing)
        staging.remember()
        _answer(decided)

    def _append(
        self,
        group: list[Pending],
        staging: GroupStaging,
        batch: AppendBatch,
        attempt: int,
        timing: _Timing,
        observe: GroupObserver | None,
    ) -> bool:
        """Append the group and write its read models; False if nothing was written (and the group was decided
        again or failed)."""
        changes = staging.changes()
        stored: list[StoredEvent] = []

        def project_in_transaction(tx: Any, events: list[StoredEvent]) -> None:
            timing.projected[0] = timing.now()
            self._project(tx, events, changes)
            timing.projected[1] = timing.now()

        append_from = timing.now()
        started = time.perf_counter()
        try:
            if self._in_transaction:
                self._store.append(batch, in_transaction=project_in_transaction)
            else:
                stored = self._store.append(batch)
        except CONFLICTS as exc:
            if observe is not None:
                _observe(observe, len(group), started, "conflict")
            self._decide_again(group, staging, exc, attempt, timing.on, observe)
            return False
        except Exception as exc:
            if observe is not None:
                _observe(observe, len(group), started, "store_error")
            log.error("group_not_committed", error=repr(exc), commands=len(group))
            staging.drop_cached()
            fail_unanswered(group, StoreUnavailable(f"the write was not committed: {exc}"))
            return False
        if observe is not None:
            _observe(observe, len(group), started, "committed")
        if timing.on:
            timing.appended = (append_from, time.time_ns())
        if not self._in_transaction and stored:
            self._project_after_commit(stored, changes, timing)
        return True

    def _decide_again(
        self,
        group: list[Pending],
        staging: GroupStaging,
        exc: Exception,
        attempt: int,
        timed: bool,
        observe: GroupObserver | None,
    ) -> None:
        """Another replica wrote one of these members (or recorded one of these keys) since we loaded them:
        nothing of ours was written. Decide again from the log, a bounded number of times."""
        staging.drop_cached()
        unanswered = [p for p in group if not p.done.is_set()]
        if self._retry.again(attempt):
            log.info("group_retried", error=repr(exc), attempt=attempt, commands=len(unanswered))
            self.run(unanswered, timed=timed, observe=observe, attempt=attempt + 1)
        else:
            log.warning("group_contended", error=repr(exc), attempts=attempt, commands=len(unanswered))
            fail_unanswered(unanswered, self._retry.gave_up(attempt, exc))

    def _project_after_commit(
        self, stored: list[StoredEvent], changes: list[MemberChange], timing: _Timing
    ) -> None:
        """The events are committed: project them now (tx=None: in a read-model transaction of the hook's own),
        before answering, so a read after the answer sees them. If that fails the answer still goes out (the
        write happened) and the cache stays in step with the log; the read models lag until the projection
        runner catches them up (the next projection notices the gap before the checkpoint and runs it; so does
        the next startup)."""
        timing.projected[0] = timing.now()
        try:
            self._project(None, stored, changes)
        except Exception as exc:
            log.error("projection_failed_after_commit", error=repr(exc), events=len(stored))
        timing.projected[1] = timing.now()

    def _tell_phases(self, group: list[Pending], decided: _Decided, attempt: int, timing: _Timing) -> None:
        projected = timing.projected
        phases = GroupPhases(
            len(group), attempt, (timing.decided_from, timing.decided_to), timing.appended,
            (projected[0], projected[1]) if projected[1] else None, self._in_transaction,
        )  # fmt: skip
        for p, _ in decided.answered:
            p.phases = phases
        for follower, _ in decided.followers:
            follower.phases = phases


def _answer(decided: _Decided) -> None:
    for p, result in decided.answered:
        p.resolve(result)
    for follower, leader in decided.followers:
        if leader.error is not None:
            follower.fail(leader.error)
        else:
            r = leader.result
            follower.resolve(
                CommandResult(
                    r.program_id, r.member_id, r.events, r.version, r.balance, r.recorded_at, True, r.extra
                )
            )


def fail_unanswered(group: list[Pending], exc: BaseException) -> None:
    """Answer every request of ``group`` not answered yet with ``exc``."""
    for p in group:
        if not p.done.is_set():
            p.fail(exc)


def _observe(observe: GroupObserver, commands: int, started: float, outcome: str) -> None:
    try:
        observe(commands, time.perf_counter() - started, outcome)
    except Exception as exc:  # metrics must never fail a write that happened
        log.warning("group_observer_failed", error=repr(exc))
