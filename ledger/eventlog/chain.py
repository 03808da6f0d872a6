"""The hash chain that makes a stream tamper-evident.

Each event's hash covers the previous event's hash, its envelope and its payload::

    hash = sha256(prev_hash || canonical_json(envelope) || payload)

where the envelope is every field of :class:`~ledger.eventlog.port.NewEvent` except the payload, plus the
``stream_id`` and ``version`` (the global position and the hashes themselves are left out: the position
is assigned at commit). ``prev_hash`` of a stream's first event is :data:`GENESIS`. The concatenation is
unambiguous: the hash has a fixed length and the envelope is one JSON object that ends at its closing brace.

:func:`verify_stream` recomputes the chain and names the first place it breaks.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.eventlog.port import EventStore, NewEvent, StoredEvent

GENESIS = bytes(32)
"""The ``prev_hash`` of a stream's first event."""

_encode_string: Callable[[str], str] = json.encoder.encode_basestring
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds and ``Z``, e.g. ``2026-03-01T02:00:00.000000Z``."""
    if value.tzinfo is UTC:
        return _format_utc(value)
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: every time in the ledger is timezone-aware")
    return _format_utc(value.astimezone(UTC))


@functools.lru_cache(maxsize=4096)
def _format_utc(value: datetime) -> str:
    # Cached: the events of a batch share a few instants. Only UTC datetimes get here, so equal keys are
    # equal instants (in zones with folds, times that differ only by fold compare equal but are not).
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_canonical(obj: object) -> str:
    """:func:`canonical_json` as text, for values made only of JSON types (no datetimes, no mappings)."""
    return _ENCODER.encode(obj)


def canonical_json(obj: object) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces; datetimes as :func:`format_time`; NaN and infinity refused."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    ).encode("utf-8")


def envelope(stream_id: str, version: int, event: NewEvent) -> dict[str, object]:
    """The hashed envelope of ``event`` as version ``version`` of ``stream_id``."""
    return {
        "event_id": event.event_id,
        "stream_id": stream_id,
        "version": version,
        "type": event.type,
        "schema_version": event.schema_version,
        "occurred_at": format_time(event.occurred_at),
        "recorded_at": format_time(event.recorded_at),
        "policy_version": event.policy_version,
        "idempotency_key": event.idempotency_key,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "actor": dict(event.actor),
    }


def _string(value: str) -> str:
    return _encode_string(value)


def _nullable(value: str | int | None) -> str:
    if value is None:
        return "null"
    return _encode_string(value) if isinstance(value, str) else int.__repr__(value)


def envelope_json(stream_id: str, version: int, event: NewEvent) -> str:
    """``canonical_json(envelope(stream_id, version, event))`` as text, written out directly (twice as fast).

    The keys are in sorted order; strings and integers are encoded exactly as :mod:`json` does.
    """
    actor = ",".join(f"{_string(k)}:{_string(v)}" for k, v in sorted(event.actor.items()))
    return (
        f'{{"actor":{{{actor}}},"causation_id":{_nullable(event.causation_id)},'
        f'"correlation_id":{_nullable(event.correlation_id)},"event_id":{_string(event.event_id)},'
        f'"idempotency_key":{_nullable(event.idempotency_key)},"occurred_at":"{format_time(event.occurred_at)}",'
        f'"policy_version":{_nullable(event.policy_version)},"recorded_at":"{format_time(event.recorded_at)}",'
        f'"schema_version":{int.__repr__(event.schema_version)},"stream_id":{_string(stream_id)},'
        f'"type":{_string(event.type)},"version":{int.__repr__(version)}}}'
    )


def event_hash(prev_hash: bytes, stream_id: str, version: int, event: NewEvent) -> bytes:
    """``sha256(prev_hash || canonical_json(envelope) || payload)``."""
    digest = hashlib.sha256(prev_hash)
    digest.update(envelope_json(stream_id, version, event).encode("utf-8"))
    digest.update(event.payload)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where a stream's chain breaks.

    ``version`` is the version at which the stream stops being the one that was written (for a deleted
    event, the missing version); ``position`` is the position of the event found there, or None when the
    break is past the last event read.
    """

    stream_id: str
    version: int
    position: int | None
    reason: str


def stream_head(store: EventStore[Any], stream: str) -> tuple[int, bytes | None]:
    """The version and hash of the stream's head as the store keeps them, read as one pair: the hash is left out
    (None) when events kept arriving between the reads."""
    for _ in range(3):
        version = store.stream_version(stream)
        head_hash = store.stream_head_hash(stream)
        if store.stream_version(stream) == version:
            return version, head_hash
    return version, None


def verify_stream(
    events: Sequence[StoredEvent],
    *,
    prev_hash: bytes = GENESIS,
    after_version: int = 0,
    head_version: int | None = None,
    head_hash: bytes | None = None,
) -> ChainBreak | None:
    """Check one stream's events, read in version order; return the first break or None.

    Pass ``prev_hash`` and ``after_version`` to check a tail that starts after a known event, and
    ``head_version``/``head_hash`` (what the store says the stream's head is) to also catch events
    removed from the end.
    """
    stream_id = events[0].stream_id if events else ""
    expected_prev = prev_hash
    last_position: int | None = None
    for index, event in enumerate(events):
        version = after_version + index + 1
        found = _check_event(event, stream_id, version, expected_prev, last_position)
        if found is not None:
            return ChainBreak(stream_id, version, event.position, found)
        expected_prev = event.hash
        last_position = event.position
    last_version = after_version + len(events)
    if head_version is not None and head_version != last_version:
        return ChainBreak(
            stream_id,
            min(head_version, last_version) + 1,
            None,
            f"stream head is version {head_version} but the events end at version {last_version}",
        )
    if head_hash is not None and head_hash != expected_prev:
        return ChainBreak(
            stream_id, last_version, None, "stream head hash differs from the last event's hash"
        )
    return None


def _check_event(
    event: StoredEvent, stream_id: str, version: int, expected_prev: bytes, last_position: int | None
) -> str | None:
    if event.stream_id != stream_id:
        return f"event {event.event_id!r} belongs to stream {event.stream_id!r}"
    if event.version != version:
        return f"expected version {version}, found version {event.version} (event missing or out of order)"
    if last_position is not None and event.position <= last_position:
        return f"position {event.position} does not follow position {last_position} (events reordered)"
    if event.prev_hash != expected_prev:
        return "prev_hash differs from the previous event's hash (event removed, replaced or reordered)"
    if event_hash(event.prev_hash, event.stream_id, event.version, event) != event.hash:
        return "hash mismatch (envelope or payload changed)"
    return None
