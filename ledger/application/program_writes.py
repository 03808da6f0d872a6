"""Program writes: creating a program, publishing a policy version, moving a test clock.

They take the write path's one idempotency fingerprint (:mod:`~ledger.application.idempotency`), its one
event-id scheme (:mod:`~ledger.application.new_events`) and its one retry policy
(:mod:`~ledger.application.retry`), and they run under the writer's lock, so no member command is decided
while a program's policies or clock change. A program's events go to its own stream (``program-{id}``) with
the command's record in the same append; :class:`ProgramStates` keeps each program's fold, which the members'
contexts are built from.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ledger.application.idempotency import fingerprint, same_request
from ledger.application.new_events import new_event
from ledger.application.principal import actor_fields
from ledger.application.retry import CONFLICTS, WriteRetry
from ledger.domain import program as prog
from ledger.domain.errors import Conflict, NotFound
from ledger.domain.streams import program_stream
from ledger.eventlog.port import AppendBatch, CommandRecord, EventStore, StreamAppend


@dataclass(frozen=True, slots=True)
class CreateProgram:
    op: ClassVar[str] = "create"
    name: str
    document: str
    clock: str
    test_time: datetime | None


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    op: ClassVar[str] = "publish"
    document: str
    effective_from: datetime | None


@dataclass(frozen=True, slots=True)
class AdvanceClock:
    op: ClassVar[str] = "advance"
    to: datetime


ProgramCommand = CreateProgram | PublishPolicy | AdvanceClock
"""What a program write asks; its fingerprint is what a retry with the same key must match."""

ProgramDecision = Callable[[prog.ProgramState], list[prog.ProgramEvent]]


class ProgramStates:
    """Each program's fold (its policy versions and clock) as the log has it."""

    def __init__(self, store: EventStore[Any]) -> None:
        self._store = store
        self._states: dict[str, prog.ProgramState] = {}
        self.lock = threading.RLock()

    def get(self, program_id: str) -> prog.ProgramState | None:
        return self._states.get(program_id)

    def ids(self) -> list[str]:
        return sorted(self._states)

    def __contains__(self, program_id: str) -> bool:
        return program_id in self._states

    def load(self, program_id: str) -> prog.ProgramState | None:
        """Fold the program's new events (all of them the first time); None when it has none."""
        with self.lock:
            state = self._states.get(program_id) or prog.ProgramState(program_id=program_id)
            for stored in self._store.read_stream(program_stream(program_id), after_version=state.version):
                prog.evolve_program(state, prog.decode(stored.payload))
            if state.version == 0:
                return None
            self._states[program_id] = state
            return state

    def adopt(self, state: prog.ProgramState) -> None:
        """Keep ``state`` as the program's fold (its events were just committed)."""
        self._states[state.program_id] = state


class ProgramWrites:
    """Decides and commits program writes (on the caller's thread, holding the writer's lock)."""

    def __init__(
        self,
        store: EventStore[Any],
        states: ProgramStates,
        writer_lock: threading.RLock,
        *,
        shared: bool,
        retry: WriteRetry | None = None,
    ) -> None:
        self._store = store
        self._states = states
        self._writer_lock = writer_lock
        self._shared = shared
        self._retry = retry or WriteRetry()

    def write(
        self, program_id: str, idempotency_key: str, command: ProgramCommand, decide: ProgramDecision
    ) -> tuple[prog.ProgramState, bool]:
        """Decide ``command`` on the program's state and commit its events; the state after, and whether the
        key's first answer was replayed (nothing written). A conflict with another replica is decided again."""
        for attempt in itertools.count(1):
            try:
                return self._write_once(program_id, idempotency_key, command, decide)
            except CONFLICTS as exc:
                if not self._retry.again(attempt):
                    raise self._retry.gave_up(attempt, exc) from exc
                self._states.load(program_id)  # another replica wrote the program: decide again
        raise AssertionError("unreachable")

    def _write_once(
        self, program_id: str, idempotency_key: str, command: ProgramCommand, decide: ProgramDecision
    ) -> tuple[prog.ProgramState, bool]:
        with self._writer_lock, self._states.lock:
            if self._shared:
                self._states.load(program_id)
            if idempotency_key:
                found = self._store.find_command(program_id, idempotency_key)
                if found is not None:
                    if not same_request(found.fingerprint, command):
                        raise Conflict(
                            f"idempotency key {idempotency_key!r} was used for a different request"
                        )
                    known = self._states.get(program_id)
                    if known is None:
                        raise NotFound("program", program_id)
                    return known, True
            state = self._states.get(program_id) or prog.ProgramState(program_id=program_id)
            produced = decide(state)
            now = produced[0].at
            actor = {"channel": "operator_console", **actor_fields()}
            new = [
                new_event(
                    e.type, prog.encode(e), e.at, now, actor=dict(actor), idempotency_key=idempotency_key
                )
                for e in produced
            ]
            stream = program_stream(program_id)
            records = (
                [CommandRecord(program_id, idempotency_key, fingerprint(command), b"{}", now, stream)]
                if idempotency_key
                else []
            )
            self._store.append(AppendBatch([StreamAppend(stream, state.version, new)], records))
            for e in produced:
                prog.evolve_program(state, e)
            self._states.adopt(state)
            return state, False
