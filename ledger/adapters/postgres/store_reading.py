"""The PostgreSQL event store's reading side: the columns it selects, the read queries, and rows turned back
into the port's :class:`~ledger.eventlog.port.StoredEvent` and :class:`~ledger.eventlog.port.CommandRecord`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from ledger.eventlog.port import CommandRecord, StoredEvent

EVENT_COLUMNS: Final = (
    "position, event_id, stream_id, version, type, schema_version, occurred_at, recorded_at, policy_version, "
    "idempotency_key, correlation_id, causation_id, actor, payload, prev_hash, hash"
)
COMMAND_COLUMNS: Final = "program_id, idempotency_key, fingerprint, response, recorded_at, stream_id"

READ_STREAM: Final = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = %s AND version > %s ORDER BY version LIMIT %s"
)
FIND_COMMANDS: Final = (
    f"SELECT {COMMAND_COLUMNS} FROM commands WHERE (program_id, idempotency_key) IN "
    "(SELECT * FROM unnest(%b::text[], %b::text[]))"
)
READ_TAILS: Final = (
    f"SELECT {EVENT_COLUMNS} FROM unnest(%b::text[], %b::bigint[]) AS wanted(sid, after_version) "
    'JOIN events ON events.stream_id = wanted.sid COLLATE "C" AND events.version > wanted.after_version '
    "ORDER BY events.stream_id, events.version"
)
READ_ALL: Final = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s"


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def event_from_row(row: tuple[Any, ...]) -> StoredEvent:
    return StoredEvent(
        position=row[0],
        event_id=row[1],
        stream_id=row[2],
        version=row[3],
        type=row[4],
        schema_version=row[5],
        occurred_at=_utc(row[6]),
        recorded_at=_utc(row[7]),
        policy_version=row[8],
        idempotency_key=row[9],
        correlation_id=row[10],
        causation_id=row[11],
        actor=MappingProxyType(json.loads(row[12])),
        payload=bytes(row[13]),
        prev_hash=bytes(row[14]),
        hash=bytes(row[15]),
    )


def command_from_row(row: tuple[Any, ...]) -> CommandRecord:
    return CommandRecord(
        program_id=row[0],
        idempotency_key=row[1],
        fingerprint=row[2],
        response=bytes(row[3]),
        recorded_at=_utc(row[4]),
        stream_id=row[5],
    )
