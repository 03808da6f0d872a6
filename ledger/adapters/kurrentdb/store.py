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

import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import ClassVar

from kurrentdbclient import KurrentDBClient
from kurrentdbclient.exceptions import InvalidCommitPositionError, KurrentDBClientError

from ledger.adapters.kurrentdb.appending import AppendMode, BatchAppender, PartialAppendError
from ledger.adapters.kurrentdb.mapping import (
    COMMAND_TYPE,
    command_from,
    command_stream,
    commit_position_of,
    decode_metadata,
    ledger_stream_id,
    stream_filter,
)
from ledger.adapters.kurrentdb.reading import StreamReads
from ledger.eventlog.port import AppendBatch, CommandRecord, StoredEvent, StoreError

__all__ = ["AppendMode", "InTransactionNotSupported", "KurrentDBEventStore", "PartialAppendError"]


class InTransactionNotSupported(StoreError):
    """``append`` was given an ``in_transaction`` hook; KurrentDB has no transaction to share. Nothing was
    written. Feed read models from :meth:`KurrentDBEventStore.read_all` instead."""


class KurrentDBEventStore(StreamReads):
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
        super().__init__(client if client is not None else KurrentDBClient(uri), namespace)
        self._appender = BatchAppender(
            self._client, namespace, append_mode=append_mode, unique_event_ids=unique_event_ids
        )
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
        return self._appender.append(batch)

    # -- reads --------------------------------------------------------------------------------------------

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        self._check_open()
        return self._read_stream(stream_id, after_version, limit)

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
