"""The PostgreSQL event store's appending side: the statements of one append and the order it runs them in
(the module docstring of :mod:`ledger.adapters.postgres.store` says why that order keeps readers gap-free)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import psycopg

from ledger.adapters.postgres.store_reading import COMMAND_COLUMNS, EVENT_COLUMNS
from ledger.eventlog.chain import GENESIS, encode_canonical
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import StreamHead, stage_batch, stream_ids

Connection = psycopg.Connection[Any]

_INSERT_COMMANDS: Final = (
    f"INSERT INTO commands ({COMMAND_COLUMNS}) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[], %b::timestamptz[], %b::text[]) "
    "ON CONFLICT (program_id, idempotency_key) DO NOTHING RETURNING program_id, idempotency_key"
)
_CREATE_STREAMS: Final = (
    "INSERT INTO streams (stream_id, version, head_hash) "
    "SELECT s.stream_id, 0, %s FROM unnest(%b::text[]) WITH ORDINALITY AS s(stream_id, n) ORDER BY s.n "
    "ON CONFLICT (stream_id) DO NOTHING"
)
_LOCK_HEADS: Final = (
    "SELECT stream_id, version, head_hash FROM streams WHERE stream_id = ANY(%b::text[]) "
    "ORDER BY stream_id FOR UPDATE"
)
_TAKE_POSITIONS: Final = (
    "UPDATE event_position SET last_position = last_position + %s WHERE singleton RETURNING last_position"
)
_INSERT_EVENTS: Final = (
    f"INSERT INTO events ({EVENT_COLUMNS}) "
    "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::bigint[], "
    "%b::timestamptz[], %b::timestamptz[], %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::bytea[], %b::bytea[], %b::bytea[]) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)
_MOVE_HEADS: Final = (
    "UPDATE streams SET version = h.version, head_hash = h.head_hash "
    "FROM unnest(%b::text[], %b::bigint[], %b::bytea[]) AS h(stream_id, version, head_hash) "
    "WHERE streams.stream_id = h.stream_id"
)


def write(conn: Connection, batch: AppendBatch) -> list[StoredEvent]:
    """Everything ``append`` does inside its transaction except the hook (see the module docstring)."""
    if batch.commands:
        _record_commands(conn, batch.commands)
    ids = stream_ids(batch)
    if not ids:
        return []
    extended = sorted({append.stream_id for append in batch.appends if append.events})
    if extended:
        conn.execute(_CREATE_STREAMS, (GENESIS, extended))
    heads = {
        stream_id: StreamHead(version, bytes(head_hash))
        for stream_id, version, head_hash in conn.execute(_LOCK_HEADS, (ids,))
        if version > 0  # a placeholder: the stream does not exist yet
    }
    staged = stage_batch(batch, heads, 1)
    if not staged.events:
        return []
    row = conn.execute(_TAKE_POSITIONS, (len(staged.events),)).fetchone()
    if row is None:
        raise StoreError("the event_position counter row is missing")
    first = int(row[0]) - len(staged.events) + 1
    events = [dataclasses.replace(event, position=first + i) for i, event in enumerate(staged.events)]
    inserted = {r[0] for r in conn.execute(_INSERT_EVENTS, _event_columns(events))}
    if len(inserted) != len(events):
        duplicate = next(event.event_id for event in events if event.event_id not in inserted)
        raise DuplicateEventId(duplicate)
    heads_moved = list(staged.heads.items())
    conn.execute(
        _MOVE_HEADS,
        (
            [stream_id for stream_id, _ in heads_moved],
            [head.version for _, head in heads_moved],
            [head.hash for _, head in heads_moved],
        ),
    )
    return events


def _record_commands(conn: Connection, commands: Sequence[CommandRecord]) -> None:
    # Claimed in key order so two appends sharing keys wait for each other instead of deadlocking.
    ordered = sorted(commands, key=lambda c: (c.program_id, c.idempotency_key))
    inserted = {
        (r[0], r[1])
        for r in conn.execute(
            _INSERT_COMMANDS,
            (
                [c.program_id for c in ordered],
                [c.idempotency_key for c in ordered],
                [c.fingerprint for c in ordered],
                [bytes(c.response) for c in ordered],
                [c.recorded_at for c in ordered],
                [c.stream_id for c in ordered],
            ),
        )
    }
    if len(inserted) != len(commands):
        duplicate = next(c for c in commands if (c.program_id, c.idempotency_key) not in inserted)
        raise DuplicateCommand(duplicate.program_id, duplicate.idempotency_key)


def _event_columns(events: list[StoredEvent]) -> tuple[list[Any], ...]:
    return (
        [e.position for e in events],
        [e.event_id for e in events],
        [e.stream_id for e in events],
        [e.version for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [e.occurred_at for e in events],
        [e.recorded_at for e in events],
        [e.policy_version for e in events],
        [e.idempotency_key for e in events],
        [e.correlation_id for e in events],
        [e.causation_id for e in events],
        [encode_canonical(dict(e.actor)) for e in events],
        [e.payload for e in events],
        [e.prev_hash for e in events],
        [e.hash for e in events],
    )
