"""The event-store port: what the write path and the projections need from any backend.

A backend stores streams of immutable events. Each stream has a version (the number of its events; the
first event is version 1) and a head hash (see :mod:`ledger.eventlog.chain`). Every event also gets a global
``position``, assigned at commit and strictly increasing in commit order, so a reader that has passed
position N never later finds a committed event below N.

``append`` is the only write. It takes an :class:`AppendBatch` (events for any number of streams plus the
command records that produced them) and writes all of it in one transaction or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, TypeVar

ANY: Final = -1
"""``StreamAppend.expected_version`` value that skips the optimistic-concurrency check."""

NO_STREAM: Final = 0
"""``StreamAppend.expected_version`` value for a stream that must not exist yet."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``payload`` is canonical JSON made by the caller; the store never parses it."""

    event_id: str
    type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    policy_version: int | None
    idempotency_key: str | None
    correlation_id: str | None
    causation_id: str | None
    actor: Mapping[str, str]
    payload: bytes


@dataclass(frozen=True, slots=True)
class StoredEvent(NewEvent):
    """An appended event: the envelope as given (times in UTC) plus where it sits and its chain hashes."""

    stream_id: str
    version: int
    position: int
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream. ``expected_version`` is the stream's current version, 0 or :data:`ANY`.

    An append with no events is a pure version check: the batch fails unless the stream is at
    ``expected_version``. Two appends to the same stream in one batch apply in order, the second
    seeing the first.
    """

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A handled command, stored with its events so a retry with the same key gets the same answer."""

    program_id: str
    idempotency_key: str
    fingerprint: str
    response: bytes
    recorded_at: datetime
    stream_id: str | None


@dataclass(frozen=True, slots=True)
class AppendBatch:
    """Everything one transaction writes."""

    appends: Sequence[StreamAppend]
    commands: Sequence[CommandRecord] = ()


class StoreError(Exception):
    """Base of every error raised by an event store."""


class WrongExpectedVersion(StoreError):
    """A stream was not at the version the append expected; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class DuplicateCommand(StoreError):
    """A command with this (program, idempotency key) is already recorded; nothing was written."""

    def __init__(self, program_id: str, idempotency_key: str) -> None:
        super().__init__(f"command {idempotency_key!r} of program {program_id!r} is already recorded")
        self.program_id = program_id
        self.idempotency_key = idempotency_key


class DuplicateEventId(StoreError):
    """An event with this id is already stored (or appears twice in the batch); nothing was written."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event id {event_id!r} is already used")
        self.event_id = event_id


TransactionT_co = TypeVar("TransactionT_co", covariant=True)

InTransaction = Callable[[TransactionT_co, list[StoredEvent]], None]
"""A hook run inside the append's transaction, after the events are inserted and before the commit."""


class EventStore(Protocol[TransactionT_co]):
    """An event store whose transaction handle (given to ``in_transaction`` hooks) is ``TransactionT_co``."""

    def append(
        self,
        batch: AppendBatch,
        *,
        in_transaction: Callable[[TransactionT_co, list[StoredEvent]], None] | None = None,
    ) -> list[StoredEvent]:
        """Write every stream append and command of ``batch`` atomically; return the events in batch order.

        ``in_transaction(handle, events)`` runs inside the same transaction after the events are
        inserted, so read models can be updated atomically with them. If it raises, nothing is written
        and the exception propagates. Raises :class:`WrongExpectedVersion`, :class:`DuplicateCommand`
        or :class:`DuplicateEventId` (nothing written).
        """
        ...

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """The stream's events with version > ``after_version``, in version order."""
        ...

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        """For each stream, its events with version > the given one, in version order (one round trip).

        Streams with no such events are left out of the answer.
        """
        ...

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Events of every stream with position > ``after_position``, in position order."""
        ...

    def stream_version(self, stream_id: str) -> int:
        """The stream's version; 0 when it does not exist."""
        ...

    def stream_head_hash(self, stream_id: str) -> bytes:
        """The hash of the stream's last event; ``chain.GENESIS`` when it does not exist."""
        ...

    def find_command(self, program_id: str, idempotency_key: str) -> CommandRecord | None:
        """The recorded command with this key, if any."""
        ...

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        """The recorded commands among ``(program_id, idempotency_key)`` pairs, by pair (one round trip)."""
        ...

    def list_streams(self, prefix: str) -> list[str]:
        """Ids of the streams starting with ``prefix`` (compared literally), sorted by code point."""
        ...

    def close(self) -> None:
        """Release the store's resources. Idempotent; other calls fail with :class:`StoreError` after it."""
        ...
