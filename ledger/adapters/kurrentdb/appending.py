"""Writing one batch to KurrentDB: command and event-id reservations, the three append modes, conflict
diagnosis and reading the written events back (see :mod:`ledger.adapters.kurrentdb.store` for what each mode
makes atomic)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from kurrentdbclient import KurrentDBClient, NewEvent, NewEvents, NewRecord, StreamState
from kurrentdbclient import StreamStateCheck as _StreamStateCheck
from kurrentdbclient.exceptions import KurrentDBClientError, NotFoundError

from ledger.adapters.kurrentdb.mapping import (
    COMMAND_TYPE,
    CONTENT_TYPE,
    EVENT_ID_TYPE,
    FORMAT,
    VOID_TYPE,
    check_stream_id,
    command_metadata,
    command_stream,
    encode_metadata,
    event_id_stream,
    expected_revision,
    new_event,
    next_revision,
    server_stream,
)
from ledger.adapters.kurrentdb.reading import StreamReads
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import (
    StagedBatch,
    StreamHead,
    check_batch,
    normalised_command,
    stage_batch,
    stream_ids,
)

AppendMode = Literal["multi_append", "records", "sequential"]

_ANY_RETRIES: Final = 50


class PartialAppendError(StoreError):
    """Sequential mode only: a stream append failed after earlier streams of the batch were written.

    ``written`` names the streams whose events are stored; the batch's command records stay recorded. The
    write path must treat this as an inconsistency needing repair (it cannot happen when appends to a
    program's streams are serialized by one writer, and never happens in the atomic modes).
    """

    def __init__(self, message: str, written: Sequence[str], cause: StoreError) -> None:
        super().__init__(message)
        self.written = list(written)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class _Reservation:
    """A command record or event-id reservation: one event in a stream that must not hold a live one."""

    stream: str
    event: NewEvent
    conflict: StoreError


@dataclass(slots=True)
class _Plan:
    """One attempt at writing a batch."""

    staged: StagedBatch
    heads: dict[str, StreamHead]
    reservations: list[_Reservation]


class _Retry(Exception):
    """The attempt lost a race it may win again (an ``ANY`` append, or a voided reservation)."""


class BatchAppender(StreamReads):
    """Writes batches in one ``append_mode``; the store checks first that it is open and given no hook."""

    def __init__(
        self, client: KurrentDBClient, namespace: str, *, append_mode: AppendMode, unique_event_ids: bool
    ) -> None:
        super().__init__(client, namespace)
        self._mode: AppendMode = append_mode
        self._unique_event_ids = unique_event_ids

    def append(self, batch: AppendBatch) -> list[StoredEvent]:
        """Write ``batch``, re-reading and retrying an attempt that lost a race."""
        check_batch(batch)
        for append in batch.appends:
            check_stream_id(append.stream_id)
        commands = [normalised_command(c) for c in batch.commands]
        reserved: dict[str, int | StreamState] = {}
        for _attempt in range(_ANY_RETRIES):
            plan = self._plan(batch, commands)
            try:
                if self._mode == "sequential":
                    self._write_sequential(batch, plan, reserved)
                else:
                    self._write_atomic(batch, plan, reserved)
            except _Retry:
                continue
            return self._read_back(plan.staged, plan.heads)
        raise StoreError(f"append gave up after {_ANY_RETRIES} lost races")

    def _plan(self, batch: AppendBatch, commands: Sequence[CommandRecord]) -> _Plan:
        heads = {sid: self._head(sid) for sid in stream_ids(batch)}
        staged = stage_batch(batch, heads, 1)  # raises WrongExpectedVersion; positions come from the server
        ns = self._namespace
        reservations = [
            _Reservation(
                command_stream(ns, c.program_id, c.idempotency_key),
                NewEvent(
                    type=COMMAND_TYPE,
                    data=c.response,
                    metadata=encode_metadata(command_metadata(c)),
                    content_type=CONTENT_TYPE,
                    id=uuid.uuid4(),
                ),
                DuplicateCommand(c.program_id, c.idempotency_key),
            )
            for c in commands
        ]
        if self._unique_event_ids:
            reservations.extend(
                _Reservation(
                    event_id_stream(ns, e.event_id),
                    NewEvent(
                        type=EVENT_ID_TYPE,
                        data=b"",
                        metadata=encode_metadata(
                            {"ledger": FORMAT, "event_id": e.event_id, "stream_id": e.stream_id}
                        ),
                        content_type=CONTENT_TYPE,
                        id=uuid.uuid4(),
                    ),
                    DuplicateEventId(e.event_id),
                )
                for e in staged.events
            )
        return _Plan(staged, heads, reservations)

    def _stream_writes(self, plan: _Plan) -> list[tuple[str, int | StreamState, list[NewEvent]]]:
        """Per stream (in first-seen order): server name, expected revision (what was read), new events."""
        grouped: dict[str, list[NewEvent]] = {}
        for event in plan.staged.events:
            grouped.setdefault(event.stream_id, []).append(new_event(event))
        return [
            (server_stream(self._namespace, sid), expected_revision(plan.heads[sid].version), events)
            for sid, events in grouped.items()
        ]

    def _write_atomic(self, batch: AppendBatch, plan: _Plan, reserved: dict[str, int | StreamState]) -> None:
        writes = self._stream_writes(plan)
        try:
            if self._mode == "records":
                self._append_records(plan, writes, reserved)
            else:
                self._check_heads(batch, plan)  # pure version checks: a read before the write in this mode
                requests = [NewEvents(name, events, expected) for name, expected, events in writes]
                requests.extend(
                    NewEvents(r.stream, [r.event], reserved.get(r.stream, StreamState.NO_STREAM))
                    for r in plan.reservations
                )
                if requests:
                    self._client.multi_append_to_stream(requests)
        except KurrentDBClientError as error:
            # A refused write (expected revision, consistency check) or an unknown outcome (deadline,
            # connection lost): find out which from the streams themselves.
            if self._committed(plan):
                return
            self._diagnose(plan, reserved)
            raise StoreError(f"append failed: {error}") from error

    def _append_records(
        self,
        plan: _Plan,
        writes: Sequence[tuple[str, int | StreamState, list[NewEvent]]],
        reserved: Mapping[str, int | StreamState],
    ) -> None:
        records = [
            NewRecord(name, e.type, e.data, e.metadata, CONTENT_TYPE, e.id)
            for name, _, events in writes
            for e in events
        ]
        records.extend(
            NewRecord(r.stream, r.event.type, r.event.data, r.event.metadata, CONTENT_TYPE, r.event.id)
            for r in plan.reservations
        )
        # One check per stream the batch names (with or without events): the revision that was read.
        checks = [
            _StreamStateCheck(server_stream(self._namespace, sid), expected_revision(head.version))
            for sid, head in plan.heads.items()
        ]
        checks.extend(
            _StreamStateCheck(r.stream, reserved.get(r.stream, StreamState.NO_STREAM))
            for r in plan.reservations
        )
        if records:
            self._client.append_records(records, checks)
        else:
            self._check_heads_of(plan, plan.heads)

    def _write_sequential(
        self, batch: AppendBatch, plan: _Plan, reserved: dict[str, int | StreamState]
    ) -> None:
        done: list[tuple[str, int]] = []  # reservations made: (stream, revision of the reservation event)
        try:
            for r in plan.reservations:
                expected = reserved.get(r.stream, StreamState.NO_STREAM)
                try:
                    self._client.append_to_stream(r.stream, current_version=expected, events=[r.event])
                except KurrentDBClientError as error:
                    if not self._is_ours(r):
                        if self._diagnose_reservation(r, reserved):
                            raise _Retry from error
                        raise StoreError(f"recording {r.stream!r} failed: {error}") from error
                done.append((r.stream, next_revision(expected)))
            self._check_heads(batch, plan)
        except BaseException:
            self._void(done)
            raise
        written: list[str] = []
        for name, expected, events in self._stream_writes(plan):
            try:
                self._client.append_to_stream(name, current_version=expected, events=events)
            except KurrentDBClientError as error:
                if self._stream_has(name, expected, events):
                    written.append(name)  # the append went through although the call failed
                    continue
                if not written:
                    self._void(done)
                    self._diagnose_streams(plan)
                    raise StoreError(f"appending to {name!r} failed: {error}") from error
                cause = StoreError(f"appending to {name!r} failed: {error}")
                raise PartialAppendError(
                    f"sequential append stopped after writing {written}: {cause}", written, cause
                ) from error
            written.append(name)

    def _void(self, done: Iterable[tuple[str, int]]) -> None:
        """Give back reservations made by a failed sequential append (best effort)."""
        for stream, revision in done:
            void = NewEvent(
                type=VOID_TYPE,
                data=b"",
                metadata=encode_metadata({"ledger": FORMAT}),
                content_type=CONTENT_TYPE,
            )
            # A reservation left in place is reported as a duplicate later; see docs/kurrentdb.md.
            with contextlib.suppress(KurrentDBClientError):
                self._client.append_to_stream(stream, current_version=revision, events=[void])

    def _check_heads(self, batch: AppendBatch, plan: _Plan) -> None:
        """Re-read the heads of the streams with pure version checks (not atomic with the write)."""
        with_events = {e.stream_id for e in plan.staged.events}
        self._check_heads_of(
            plan, {sid: plan.heads[sid] for sid in stream_ids(batch) if sid not in with_events}
        )

    def _check_heads_of(self, plan: _Plan, heads: Mapping[str, StreamHead]) -> None:
        for sid, head in heads.items():
            if self._head(sid) != head:
                raise _Retry

    def _is_ours(self, r: _Reservation) -> bool:
        last = self._last(r.stream)
        return last is not None and last.id == r.event.id

    def _stream_has(self, name: str, expected: int | StreamState, events: Sequence[NewEvent]) -> bool:
        """Whether ``events`` sit in ``name`` right after revision ``expected`` (a write that went through)."""
        start = next_revision(expected)
        try:
            found = self._client.get_stream(name, stream_position=start, limit=len(events))
        except NotFoundError:
            return False
        except KurrentDBClientError as error:
            raise StoreError(f"reading {name!r} failed: {error}") from error
        return [e.id for e in found] == [e.id for e in events]

    def _committed(self, plan: _Plan) -> bool:
        """Whether an atomic write whose call failed was committed after all (its events are there)."""
        if plan.reservations:
            return self._is_ours(plan.reservations[0])
        for name, expected, events in self._stream_writes(plan):
            return self._stream_has(name, expected, events)
        return False

    def _diagnose(self, plan: _Plan, reserved: dict[str, int | StreamState]) -> None:
        """After a refused atomic write: raise the conflict's error or :class:`_Retry`; return when no
        conflict is found (the caller then reports the server's error)."""
        updated = False
        for r in plan.reservations:
            updated = self._diagnose_reservation(r, reserved) or updated
        if updated:
            raise _Retry
        self._diagnose_streams(plan)

    def _diagnose_reservation(self, r: _Reservation, reserved: dict[str, int | StreamState]) -> bool:
        """Raise ``r.conflict`` when the reservation is held; True when it was voided at a revision the
        attempt did not expect (the caller retries with that revision)."""
        last = self._last(r.stream)
        if last is None:
            return False
        if last.type == VOID_TYPE:
            if reserved.get(r.stream) == last.stream_position:
                return False
            reserved[r.stream] = last.stream_position
            return True
        raise r.conflict

    def _diagnose_streams(self, plan: _Plan) -> None:
        """Retry when a stream moved since its head was read: staging then raises WrongExpectedVersion
        for an append with an explicit expected version, and an ``ANY`` append is re-chained."""
        for sid, head in plan.heads.items():
            if self._head(sid) != head:
                raise _Retry

    def _read_back(self, staged: StagedBatch, heads: Mapping[str, StreamHead]) -> list[StoredEvent]:
        """The written events as stored (their positions are only known to the server)."""
        counts: dict[str, int] = {}
        for event in staged.events:
            counts[event.stream_id] = counts.get(event.stream_id, 0) + 1
        found: dict[str, StoredEvent] = {}
        for sid, count in counts.items():
            events = self._read_stream(sid, heads[sid].version, count)
            for event in events:
                found[event.event_id] = event
        result = []
        for event in staged.events:
            stored = found.get(event.event_id)
            if stored is None or stored.hash != event.hash:
                raise StoreError(f"event {event.event_id!r} was appended but reads back differently")
            result.append(stored)
        return result
