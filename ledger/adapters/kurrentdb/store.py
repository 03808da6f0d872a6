"""The KurrentDB (EventStoreDB) event store, through the ``kurrentdbclient`` gRPC client.

Mapping (see ``docs/kurrentdb.md`` for the whole story):

* A ledger stream ``S`` is the KurrentDB stream ``namespace + S`` (``namespace`` is empty in production;
  tests and shared servers use it to keep stores apart). Version ``n`` (1-based) is stream revision
  ``n - 1``; expected version 0 is ``StreamState.NO_STREAM``.
* An event keeps its payload bytes as the KurrentDB event data and its envelope (ids, times, policy
  version, actor, version, hashes) in the metadata: a JSON object whose values are all strings, so the
  same metadata is accepted by the multi-stream append of KurrentDB 25.1+. Event ids become
  ``uuid5(EVENT_ID_NAMESPACE, event_id)``; the original id stays in the metadata.
* A command record is the single event of the stream ``namespace + "_ledger-command-" + program + "-" +
  sha256(program, key)``, appended with expected ``NO_STREAM``: a second record with that key conflicts
  (:class:`DuplicateCommand`). Event ids are kept unique the same way, with one reservation stream per
  event id (``_ledger-eventid-<uuid>``): KurrentDB itself only deduplicates ids within one stream.
* ``position`` is the event's ``$all`` commit position plus one (so 0 still means "before everything"):
  strictly increasing in commit order but *not* dense - positions jump by the size of the log records
  between events.

Atomicity depends on ``append_mode``:

* ``"multi_append"`` (KurrentDB 25.1+, the default): one ``multi_append_to_stream`` call carries every
  stream of the batch plus the command and event-id reservations; the server writes all or nothing.
  Pure version checks (appends without events) are checked by reading before the write, not atomically.
* ``"records"`` (KurrentDB 26.1+): one ``append_records`` call with a consistency check per stream; fully
  atomic, including pure version checks.
* ``"sequential"`` (any server): one append per stream, in the order command reservations, event-id
  reservations, then the streams in batch order. NOT atomic; see :class:`PartialAppendError`.

In every mode the store reads the heads of the batch's streams first, computes the hash chain from them
and writes with the exact revisions it read (even for ``ANY``), so a concurrent append can never fork a
chain: the server refuses the write and the store re-reads and retries (``ANY``) or raises
:class:`WrongExpectedVersion`.

KurrentDB cannot share a transaction with a read-model database: ``in_transaction`` is refused
(:class:`InTransactionNotSupported`, nothing written) and read models are fed by a projection runner that
tails :meth:`KurrentDBEventStore.read_all`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import ClassVar, Final, Literal

from kurrentdbclient import KurrentDBClient, NewEvent, NewEvents, NewRecord, RecordedEvent, StreamState
from kurrentdbclient import StreamStateCheck as _StreamStateCheck
from kurrentdbclient.exceptions import (
    InvalidCommitPositionError,
    KurrentDBClientError,
    NotFoundError,
)

from ledger.eventlog.chain import encode_canonical, format_time
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import (
    EMPTY_HEAD,
    StagedBatch,
    StreamHead,
    check_batch,
    normalised_command,
    stage_batch,
    stream_ids,
)

AppendMode = Literal["multi_append", "records", "sequential"]

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

_ANY_RETRIES: Final = 50


class InTransactionNotSupported(StoreError):
    """``append`` was given an ``in_transaction`` hook; KurrentDB has no transaction to share. Nothing was
    written. Feed read models from :meth:`KurrentDBEventStore.read_all` instead."""


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


# -- pure mapping ---------------------------------------------------------------------------------------------


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


# -- the store ------------------------------------------------------------------------------------------------


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


class KurrentDBEventStore:
    """An :class:`~ledger.eventlog.port.EventStore` on a KurrentDB server.

    ``uri`` is a ``kurrentdb://`` (or ``esdb://``) connection string; pass ``client`` to share a
    :class:`KurrentDBClient` (the store then does not close it). ``namespace`` prefixes every stream name on
    the server. ``unique_event_ids=False`` skips the per-event reservation streams (halving the writes):
    a repeated event id is then only caught within a batch.
    """

    supports_in_transaction: ClassVar[bool] = False
    """KurrentDB cannot take part in a read-model database's transaction: ``in_transaction`` is refused."""

    def __init__(
        self,
        uri: str,
        *,
        client: KurrentDBClient | None = None,
        namespace: str = "",
        append_mode: AppendMode = "multi_append",
        unique_event_ids: bool = True,
    ) -> None:
        if append_mode not in ("multi_append", "records", "sequential"):
            raise ValueError(f"unknown append_mode {append_mode!r}")
        if namespace.startswith("$"):
            raise ValueError("the namespace must not start with '$' (system streams)")
        self._owns_client = client is None
        self._client = client if client is not None else KurrentDBClient(uri)
        self._namespace = namespace
        self._mode: AppendMode = append_mode
        self._unique_event_ids = unique_event_ids
        self._closed = False
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self._namespace

    def __enter__(self) -> KurrentDBEventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the event store is closed")

    # -- writes -------------------------------------------------------------------------------------------

    def append(
        self,
        batch: AppendBatch,
        *,
        in_transaction: Callable[[object, list[StoredEvent]], None] | None = None,
    ) -> list[StoredEvent]:
        """Write ``batch``; see the module docstring for what is atomic in each ``append_mode``."""
        self._check_open()
        if in_transaction is not None:
            raise InTransactionNotSupported(
                "KurrentDB cannot run an in_transaction hook: feed read models from read_all instead"
            )
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
            grouped.setdefault(event.stream_id, []).append(_new_event(event))
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
            events = self.read_stream(sid, heads[sid].version, count)
            for event in events:
                found[event.event_id] = event
        result = []
        for event in staged.events:
            stored = found.get(event.event_id)
            if stored is None or stored.hash != event.hash:
                raise StoreError(f"event {event.event_id!r} was appended but reads back differently")
            result.append(stored)
        return result

    # -- reads --------------------------------------------------------------------------------------------

    def _last(self, stream_name: str) -> RecordedEvent | None:
        try:
            events = self._client.get_stream(stream_name, backwards=True, limit=1)
        except NotFoundError:
            return None
        except KurrentDBClientError as error:
            raise StoreError(f"reading {stream_name!r} failed: {error}") from error
        return events[0] if events else None

    def _head(self, stream_id: str) -> StreamHead:
        last = self._last(server_stream(self._namespace, stream_id))
        if last is None:
            return EMPTY_HEAD
        meta = decode_metadata(last.metadata)
        if meta is None or "hash" not in meta:
            raise StoreError(f"the last event of {stream_id!r} was not written by the ledger")
        return StreamHead(version_of(last.stream_position), bytes.fromhex(meta["hash"]))

    def _decode(self, recorded: RecordedEvent) -> StoredEvent | None:
        meta = decode_metadata(recorded.metadata)
        if meta is None or "hash" not in meta:
            return None
        sid = ledger_stream_id(self._namespace, recorded.stream_name)
        if sid is None or meta.get("stream_id") != sid:
            return None
        try:
            return stored_event_from(
                meta,
                event_type=recorded.type,
                payload=recorded.data,
                stream_position=recorded.stream_position,
                commit_position=recorded.commit_position,
            )
        except (KeyError, ValueError) as error:
            raise StoreError(
                f"event {recorded.id} of {recorded.stream_name!r} is malformed: {error}"
            ) from error

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        self._check_open()
        if limit is not None and limit <= 0:
            return []
        try:
            recorded = self._client.get_stream(
                server_stream(self._namespace, stream_id),
                stream_position=max(after_version, 0),
                limit=sys.maxsize if limit is None else limit,
            )
        except NotFoundError:
            return []
        except KurrentDBClientError as error:
            raise StoreError(f"reading {stream_id!r} failed: {error}") from error
        events = []
        for r in recorded:
            event = self._decode(r)
            if event is None:
                raise StoreError(f"stream {stream_id!r} holds an event the ledger did not write")
            events.append(event)
        return events

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        # KurrentDB reads one stream per call.
        tails = {sid: self.read_stream(sid, after_version=v) for sid, v in after_versions.items()}
        return {sid: events for sid, events in tails.items() if events}

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Ledger events after ``after_position``, in ``$all`` order.

        ``after_position`` should be 0 or a position this store returned; any other value makes the
        server refuse the start position and the store falls back to scanning from the beginning.
        """
        self._check_open()
        if limit <= 0:
            return []
        pattern = stream_filter(self._namespace)
        try:
            try:
                return self._collect(commit_position_of(after_position), after_position, limit, pattern)
            except InvalidCommitPositionError:
                return self._collect(None, after_position, limit, pattern)
        except KurrentDBClientError as error:
            raise StoreError(f"reading $all failed: {error}") from error

    def _collect(self, start: int | None, after: int, limit: int, pattern: str) -> list[StoredEvent]:
        events: list[StoredEvent] = []
        last = after
        with self._client.read_all(
            commit_position=start, filter_include=(pattern,), filter_by_stream_name=True
        ) as response:
            for recorded in response:
                event = self._decode(recorded)
                if event is None or event.position <= after:
                    continue
                if event.position <= last:
                    raise StoreError(f"two events share position {event.position}: one position per event")
                last = event.position
                events.append(event)
                if len(events) >= limit:
                    break
        return events

    def stream_version(self, stream_id: str) -> int:
        self._check_open()
        return self._head(stream_id).version

    def stream_head_hash(self, stream_id: str) -> bytes:
        self._check_open()
        return self._head(stream_id).hash

    def find_command(self, program_id: str, idempotency_key: str) -> CommandRecord | None:
        self._check_open()
        last = self._last(command_stream(self._namespace, program_id, idempotency_key))
        if last is None or last.type != COMMAND_TYPE:
            return None
        meta = decode_metadata(last.metadata)
        if meta is None:
            raise StoreError(f"command {idempotency_key!r} of {program_id!r} has a foreign record")
        return command_from(meta, last.data)

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        """The recorded commands among ``keys``: one stream read per key (KurrentDB has no multi-get)."""
        found: dict[tuple[str, str], CommandRecord] = {}
        for program_id, idempotency_key in dict.fromkeys(keys):
            record = self.find_command(program_id, idempotency_key)
            if record is not None:
                found[(program_id, idempotency_key)] = record
        return found

    def list_streams(self, prefix: str) -> list[str]:
        """Ledger streams starting with ``prefix``: a filtered scan of ``$all`` (KurrentDB keeps no cheap
        stream list; the ``$streams`` projection would be cheaper but lags behind the writes)."""
        self._check_open()
        names: set[str] = set()
        try:
            with self._client.read_all(
                filter_include=(stream_filter(self._namespace, prefix),), filter_by_stream_name=True
            ) as response:
                for recorded in response:
                    if recorded.stream_position != 0:
                        continue
                    sid = ledger_stream_id(self._namespace, recorded.stream_name)
                    meta = decode_metadata(recorded.metadata)
                    if sid is not None and sid.startswith(prefix) and meta and meta.get("stream_id") == sid:
                        names.add(sid)
        except KurrentDBClientError as error:
            raise StoreError(f"listing streams failed: {error}") from error
        return sorted(names)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._owns_client:
                self._client.close()


def _new_event(event: StoredEvent) -> NewEvent:
    return NewEvent(
        type=event.type,
        data=event.payload,
        metadata=encode_metadata(event_metadata(event)),
        content_type=CONTENT_TYPE,
        id=event_uuid(event.event_id),
    )
