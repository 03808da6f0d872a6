"""Rows of the SQLite store's tables to and from the port's types.

Times are stored as integer microseconds since the Unix epoch and come back as aware UTC datetimes equal
to the ones written; the actor is stored as canonical JSON text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from ledger.eventlog.chain import encode_canonical
from ledger.eventlog.port import CommandRecord, StoredEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

EVENT_COLUMNS = (
    "position, event_id, stream_id, version, type, schema_version, occurred_at, recorded_at, policy_version, "
    "idempotency_key, correlation_id, causation_id, actor, payload, prev_hash, hash"
)
COMMAND_COLUMNS = "program_id, idempotency_key, fingerprint, response, recorded_at, stream_id"


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(0, 0, value)


# Reading a stream decodes the same few instants (the events of a batch share their times) and the same few
# actors over and over: both are cached. The values are immutable (the actor is a read-only mapping of
# strings), so events may share them.
_time = functools.lru_cache(maxsize=4096)(from_micros)


@functools.lru_cache(maxsize=1024)
def _actor(text: str) -> Mapping[str, str]:
    return MappingProxyType(json.loads(text))


def event_row(event: StoredEvent) -> tuple[object, ...]:
    """The ``events`` row of ``event``, in :data:`EVENT_COLUMNS` order."""
    return (
        event.position,
        event.event_id,
        event.stream_id,
        event.version,
        event.type,
        event.schema_version,
        to_micros(event.occurred_at),
        to_micros(event.recorded_at),
        event.policy_version,
        event.idempotency_key,
        event.correlation_id,
        event.causation_id,
        encode_canonical(dict(event.actor)),
        event.payload,
        event.prev_hash,
        event.hash,
    )


def event_from_row(row: tuple[Any, ...]) -> StoredEvent:
    """The event stored in an ``events`` row selected as :data:`EVENT_COLUMNS`."""
    # Positional, in StoredEvent's field order (NewEvent's fields first): measurably cheaper per row.
    return StoredEvent(
        row[1],  # event_id
        row[4],  # type
        row[5],  # schema_version
        _time(row[6]),  # occurred_at
        _time(row[7]),  # recorded_at
        row[8],  # policy_version
        row[9],  # idempotency_key
        row[10],  # correlation_id
        row[11],  # causation_id
        _actor(row[12]),  # actor
        row[13],  # payload
        row[2],  # stream_id
        row[3],  # version
        row[0],  # position
        row[14],  # prev_hash
        row[15],  # hash
    )


def command_row(command: CommandRecord) -> tuple[object, ...]:
    """The ``commands`` row of ``command``, in :data:`COMMAND_COLUMNS` order."""
    return (
        command.program_id,
        command.idempotency_key,
        command.fingerprint,
        bytes(command.response),
        to_micros(command.recorded_at),
        command.stream_id,
    )


def command_from_row(row: tuple[Any, ...]) -> CommandRecord:
    """The command stored in a ``commands`` row selected as :data:`COMMAND_COLUMNS`."""
    return CommandRecord(
        program_id=row[0],
        idempotency_key=row[1],
        fingerprint=row[2],
        response=row[3],
        recorded_at=from_micros(row[4]),
        stream_id=row[5],
    )
