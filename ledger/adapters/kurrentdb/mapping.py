"""How the ledger's streams, versions, positions and event envelopes map onto KurrentDB: pure, no client.

The whole mapping is told in :mod:`ledger.adapters.kurrentdb.store`'s docstring and in ``docs/kurrentdb.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final

from kurrentdbclient import NewEvent, StreamState

from ledger.eventlog.chain import encode_canonical, format_time
from ledger.eventlog.port import ANY, CommandRecord, StoredEvent, StoreError

FORMAT: Final = "1"
"""Value of the ``ledger`` metadata key: marks an event as the ledger's and names the metadata format."""

EVENT_ID_NAMESPACE: Final = uuid.UUID("5b0f4d0e-6a57-5f7e-9a3c-1d2b8e4c7a10")
"""The uuid5 namespace that turns the ledger's string event ids into KurrentDB event UUIDs."""

RESERVED_PREFIX: Final = "_ledger-"
"""Prefix of the store's own streams (inside the namespace); ledger stream ids may not start with it."""

COMMAND_PREFIX: Final = RESERVED_PREFIX + "command-"
EVENT_ID_PREFIX: Final = RESERVED_PREFIX + "eventid-"

COMMAND_TYPE: Final = "LedgerCommandRecorded"
EVENT_ID_TYPE: Final = "LedgerEventIdReserved"
VOID_TYPE: Final = "LedgerReservationVoided"
"""Appended to a command or event-id reservation that a failed (sequential) append gives back."""

CONTENT_TYPE: Final = "application/octet-stream"
"""Payloads are stored as opaque bytes: the store never parses them."""


def expected_revision(version: int) -> int | StreamState:
    """The KurrentDB expected revision for a ledger expected version (1-based count, 0 = none, ANY)."""
    if version == ANY:
        return StreamState.ANY
    if version == 0:
        return StreamState.NO_STREAM
    if version < 0:
        raise ValueError(f"expected version must be >= {ANY}, got {version}")
    return version - 1


def version_of(revision: int | StreamState) -> int:
    """The ledger version (event count) of a stream whose last event is at ``revision``."""
    if revision == StreamState.NO_STREAM:
        return 0
    if not isinstance(revision, int) or revision < 0:
        raise ValueError(f"not a stream revision: {revision!r}")
    return revision + 1


def next_revision(expected: int | StreamState) -> int:
    """The revision the first event appended after the exact expected revision ``expected`` gets."""
    if expected == StreamState.NO_STREAM:
        return 0
    if isinstance(expected, int) and expected >= 0:
        return expected + 1
    raise ValueError(f"not an exact expected revision: {expected!r}")


def position_of(commit_position: int) -> int:
    """The ledger ``position`` of an event at ``commit_position`` in ``$all`` (monotonic, not dense)."""
    if commit_position < 0:
        raise ValueError(f"commit position must be >= 0, got {commit_position}")
    return commit_position + 1


def commit_position_of(position: int) -> int | None:
    """The commit position to start a forward ``$all`` read after ``position`` (None: from the start)."""
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    return None if position == 0 else position - 1


def event_uuid(event_id: str) -> uuid.UUID:
    """The KurrentDB id of the ledger event ``event_id`` (deterministic: a retry sends the same id)."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, event_id)


def check_stream_id(stream_id: str) -> None:
    """Refuse ledger stream ids KurrentDB or this store reserve."""
    if not stream_id:
        raise ValueError("stream ids must not be empty")
    if stream_id.startswith("$"):
        raise ValueError(f"stream id {stream_id!r}: '$' starts KurrentDB system streams")
    if stream_id.startswith(RESERVED_PREFIX):
        raise ValueError(f"stream id {stream_id!r}: {RESERVED_PREFIX!r} is reserved by the KurrentDB store")


def server_stream(namespace: str, stream_id: str) -> str:
    """The KurrentDB stream holding ledger stream ``stream_id``."""
    return namespace + stream_id


def ledger_stream_id(namespace: str, stream_name: str) -> str | None:
    """The ledger stream id of KurrentDB stream ``stream_name``, or None when it is not a ledger stream."""
    if not stream_name.startswith(namespace):
        return None
    stream_id = stream_name[len(namespace) :]
    if not stream_id or stream_id.startswith(("$", RESERVED_PREFIX)):
        return None
    return stream_id


def command_stream(namespace: str, program_id: str, idempotency_key: str) -> str:
    """The stream recording the command ``idempotency_key`` of ``program_id``.

    The digest covers both parts, so the name is injective whatever characters they contain; the
    program id is repeated in clear to make the stream recognisable.
    """
    digest = hashlib.sha256(encode_canonical([program_id, idempotency_key]).encode("utf-8")).hexdigest()
    return f"{namespace}{COMMAND_PREFIX}{program_id}-{digest}"


def event_id_stream(namespace: str, event_id: str) -> str:
    """The stream reserving the ledger event id ``event_id``."""
    return f"{namespace}{EVENT_ID_PREFIX}{event_uuid(event_id)}"


def escape_regex(text: str) -> str:
    """``text`` as a literal in a server-side (.NET) regular expression.

    Every ASCII character other than a letter, digit or underscore becomes ``\\xNN``, which .NET and
    Python's :mod:`re` both read as that character; other characters stand for themselves.
    """
    return "".join(
        f"\\x{ord(ch):02x}" if ch.isascii() and not (ch.isalnum() or ch == "_") else ch for ch in text
    )


def stream_filter(namespace: str, prefix: str = "") -> str:
    """The stream-name filter for ledger streams of ``namespace`` starting with ``prefix``.

    The client anchors it as ``^...$``. It excludes the store's reserved streams and system (``$``) streams.
    """
    reserved = escape_regex(RESERVED_PREFIX)
    return f"{escape_regex(namespace)}(?!{reserved}|\\x24){escape_regex(prefix)}[\\s\\S]*"


def _optional(meta: Mapping[str, str], key: str) -> str | None:
    return meta.get(key)


def _int(meta: Mapping[str, str], key: str) -> int:
    value = meta[key]
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError(f"metadata {key!r} is not an integer: {value!r}")
    return int(value)


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.utcoffset() is None:
        raise ValueError(f"naive time in metadata: {value!r}")
    return parsed


def event_metadata(event: StoredEvent) -> dict[str, str]:
    """The metadata of a staged event: its envelope, version and hashes, every value a string.

    Optional fields that are None are left out; the actor map is canonical JSON.
    """
    meta = {
        "ledger": FORMAT,
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "version": str(event.version),
        "schema_version": str(event.schema_version),
        "occurred_at": format_time(event.occurred_at),
        "recorded_at": format_time(event.recorded_at),
        "actor": encode_canonical(dict(sorted(event.actor.items()))),
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
    }
    if event.policy_version is not None:
        meta["policy_version"] = str(event.policy_version)
    for key in ("idempotency_key", "correlation_id", "causation_id"):
        value = getattr(event, key)
        if value is not None:
            meta[key] = value
    return meta


def encode_metadata(meta: Mapping[str, str]) -> bytes:
    """Metadata as canonical UTF-8 JSON."""
    return encode_canonical(dict(meta)).encode("utf-8")


def decode_metadata(raw: bytes) -> dict[str, str] | None:
    """The string-valued metadata object of a ledger event, or None when the bytes are not ours.

    Keys added by the server (e.g. ``$schema...`` on multi-stream appends) are kept but ignored.
    """
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("ledger") != FORMAT:
        return None
    return {str(k): v for k, v in obj.items() if isinstance(v, str)}


def stored_event_from(
    meta: Mapping[str, str], *, event_type: str, payload: bytes, stream_position: int, commit_position: int
) -> StoredEvent:
    """Rebuild a :class:`StoredEvent` from what KurrentDB returns."""
    version = _int(meta, "version")
    if version != version_of(stream_position):
        raise StoreError(
            f"event {meta.get('event_id')!r} claims version {version} but sits at revision {stream_position}"
        )
    actor = json.loads(meta["actor"])
    if not isinstance(actor, dict) or not all(isinstance(v, str) for v in actor.values()):
        raise ValueError("metadata 'actor' is not a string map")
    policy = meta.get("policy_version")
    return StoredEvent(
        event_id=meta["event_id"],
        type=event_type,
        schema_version=_int(meta, "schema_version"),
        occurred_at=_time(meta["occurred_at"]),
        recorded_at=_time(meta["recorded_at"]),
        policy_version=None if policy is None else _int(meta, "policy_version"),
        idempotency_key=_optional(meta, "idempotency_key"),
        correlation_id=_optional(meta, "correlation_id"),
        causation_id=_optional(meta, "causation_id"),
        actor=MappingProxyType(actor),
        payload=bytes(payload),
        stream_id=meta["stream_id"],
        version=version,
        position=position_of(commit_position),
        prev_hash=bytes.fromhex(meta["prev_hash"]),
        hash=bytes.fromhex(meta["hash"]),
    )


def command_metadata(command: CommandRecord) -> dict[str, str]:
    """The metadata of a command record's event (its response is the event data)."""
    meta = {
        "ledger": FORMAT,
        "program_id": command.program_id,
        "idempotency_key": command.idempotency_key,
        "fingerprint": command.fingerprint,
        "recorded_at": format_time(command.recorded_at),
    }
    if command.stream_id is not None:
        meta["stream_id"] = command.stream_id
    return meta


def command_from(meta: Mapping[str, str], response: bytes) -> CommandRecord:
    """Rebuild a :class:`CommandRecord` from its event."""
    return CommandRecord(
        program_id=meta["program_id"],
        idempotency_key=meta["idempotency_key"],
        fingerprint=meta["fingerprint"],
        response=bytes(response),
        recorded_at=_time(meta["recorded_at"]),
        stream_id=meta.get("stream_id"),
    )


def new_event(event: StoredEvent) -> NewEvent:
    """The KurrentDB event carrying a staged ledger event: its payload as data, its envelope as metadata."""
    return NewEvent(
        type=event.type,
        data=event.payload,
        metadata=encode_metadata(event_metadata(event)),
        content_type=CONTENT_TYPE,
        id=event_uuid(event.event_id),
    )
