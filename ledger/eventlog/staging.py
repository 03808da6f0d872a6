"""Turning an :class:`AppendBatch` into stored events: the part of ``append`` every backend shares.

A backend calls :func:`check_batch` before touching storage, then, inside its transaction, loads the
current heads of :func:`stream_ids` and calls :func:`stage_batch` with them and the next free position.
Staging checks the expected versions, numbers the events, chains their hashes and normalises them (times
in UTC, a read-only actor mapping); the backend then checks what only storage knows (command keys and event
ids already used) and writes the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from ledger.eventlog.chain import GENESIS, event_hash
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    NewEvent,
    StoredEvent,
    WrongExpectedVersion,
)


@dataclass(frozen=True, slots=True)
class StreamHead:
    """A stream's current version and the hash of its last event."""

    version: int
    hash: bytes


EMPTY_HEAD = StreamHead(0, GENESIS)


@dataclass(frozen=True, slots=True)
class StagedBatch:
    """The events to insert, in batch order, and the new head of every stream they extend."""

    events: list[StoredEvent]
    heads: dict[str, StreamHead]


def _aware(value: datetime, what: str) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")


def check_batch(batch: AppendBatch) -> None:
    """Refuse a malformed batch, or one that repeats an event id or command key within itself."""
    event_ids: set[str] = set()
    for append in batch.appends:
        if append.expected_version < ANY:
            raise ValueError(f"expected_version of {append.stream_id!r} must be >= {ANY}")
        for event in append.events:
            _aware(event.occurred_at, "occurred_at")
            _aware(event.recorded_at, "recorded_at")
            if isinstance(event.schema_version, bool) or isinstance(event.policy_version, bool):
                raise ValueError(f"event {event.event_id!r}: versions are integers, not booleans")
            if event.event_id in event_ids:
                raise DuplicateEventId(event.event_id)
            event_ids.add(event.event_id)
    keys: set[tuple[str, str]] = set()
    for command in batch.commands:
        _aware(command.recorded_at, "recorded_at")
        key = (command.program_id, command.idempotency_key)
        if key in keys:
            raise DuplicateCommand(*key)
        keys.add(key)


def stream_ids(batch: AppendBatch) -> list[str]:
    """The distinct streams the batch names, in first-seen order."""
    return list(dict.fromkeys(append.stream_id for append in batch.appends))


def event_ids(batch: AppendBatch) -> list[str]:
    """Every event id of the batch, in batch order."""
    return [event.event_id for append in batch.appends for event in append.events]


def stage_batch(batch: AppendBatch, heads: Mapping[str, StreamHead], first_position: int) -> StagedBatch:
    """Number and chain the batch's events from ``heads`` (streams missing from it do not exist yet).

    Raises :class:`WrongExpectedVersion` for the first append whose stream is not at its expected version.
    """
    current = dict(heads)
    changed: dict[str, StreamHead] = {}
    staged: list[StoredEvent] = []
    position = first_position
    for append in batch.appends:
        head = current.get(append.stream_id, EMPTY_HEAD)
        if append.expected_version not in (ANY, head.version):
            raise WrongExpectedVersion(append.stream_id, append.expected_version, head.version)
        for event in append.events:
            stored = stored_event(event, append.stream_id, head, position)
            staged.append(stored)
            head = StreamHead(stored.version, stored.hash)
            position += 1
        if append.events:
            current[append.stream_id] = changed[append.stream_id] = head
    return StagedBatch(staged, changed)


def stored_event(event: NewEvent, stream_id: str, head: StreamHead, position: int) -> StoredEvent:
    """``event`` appended after ``head`` of ``stream_id`` at ``position``."""
    version = head.version + 1
    return StoredEvent(
        event_id=event.event_id,
        type=event.type,
        schema_version=event.schema_version,
        occurred_at=event.occurred_at.astimezone(UTC),
        recorded_at=event.recorded_at.astimezone(UTC),
        policy_version=event.policy_version,
        idempotency_key=event.idempotency_key,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        actor=MappingProxyType(dict(event.actor)),
        payload=bytes(event.payload),
        stream_id=stream_id,
        version=version,
        position=position,
        prev_hash=head.hash,
        hash=event_hash(head.hash, stream_id, version, event),
    )


def normalised_command(command: CommandRecord) -> CommandRecord:
    """``command`` with its time in UTC and its response as ``bytes``."""
    return CommandRecord(
        program_id=command.program_id,
        idempotency_key=command.idempotency_key,
        fingerprint=command.fingerprint,
        response=bytes(command.response),
        recorded_at=command.recorded_at.astimezone(UTC),
        stream_id=command.stream_id,
    )


_MAX_CODE_POINT = 0x10FFFF


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order), if one exists.

    ``list_streams`` scans ``prefix <= stream_id < bound`` on the primary key (SQL stores compare ids in code
    point order).
    """
    stripped = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not stripped:
        return None
    last = ord(stripped[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:  # surrogates cannot be stored as UTF-8
        last = 0xE000
    return stripped[:-1] + chr(last)
