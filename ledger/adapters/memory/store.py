"""The in-memory event store: the reference backend for unit tests.

It behaves like the SQLite store (same errors, same ordering, same hashes) but keeps everything in
process memory behind one lock. An append is staged completely, handed to the ``in_transaction`` hook and
only then applied, so a failing check or hook leaves the store untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    StoredEvent,
    StoreError,
)
from ledger.eventlog.staging import (
    EMPTY_HEAD,
    StreamHead,
    check_batch,
    normalised_command,
    stage_batch,
    stream_ids,
)


class MemoryTransaction:
    """The handle ``in_transaction`` hooks get from :class:`InMemoryEventStore`.

    An in-memory read model registers ``on_commit`` callbacks to apply its changes only if the append
    commits; they run in registration order, still under the store's lock, right after the commit.
    """

    __slots__ = ("_on_commit",)

    def __init__(self) -> None:
        self._on_commit: list[Callable[[], None]] = []

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the append has committed."""
        self._on_commit.append(callback)

    def _committed(self) -> None:
        for callback in self._on_commit:
            callback()


class InMemoryEventStore:
    """An :class:`~ledger.eventlog.port.EventStore` held in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._events: list[StoredEvent] = []
        self._streams: dict[str, list[StoredEvent]] = {}
        self._event_ids: set[str] = set()
        self._commands: dict[tuple[str, str], CommandRecord] = {}
        self._closed = False

    def __enter__(self) -> InMemoryEventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def append(
        self,
        batch: AppendBatch,
        *,
        in_transaction: Callable[[MemoryTransaction, list[StoredEvent]], None] | None = None,
    ) -> list[StoredEvent]:
        check_batch(batch)
        with self._lock:
            self._check_open()
            for command in batch.commands:
                if (command.program_id, command.idempotency_key) in self._commands:
                    raise DuplicateCommand(command.program_id, command.idempotency_key)
            staged = stage_batch(batch, self._heads(stream_ids(batch)), len(self._events) + 1)
            for event in staged.events:
                if event.event_id in self._event_ids:
                    raise DuplicateEventId(event.event_id)
            transaction = MemoryTransaction()
            if in_transaction is not None:
                in_transaction(transaction, list(staged.events))
            self._apply(staged.events, batch.commands)
            transaction._committed()
            return list(staged.events)

    def _heads(self, ids: list[str]) -> dict[str, StreamHead]:
        heads: dict[str, StreamHead] = {}
        for stream_id in ids:
            stream = self._streams.get(stream_id)
            heads[stream_id] = StreamHead(stream[-1].version, stream[-1].hash) if stream else EMPTY_HEAD
        return heads

    def _apply(self, events: list[StoredEvent], commands: Sequence[CommandRecord]) -> None:
        for event in events:
            self._events.append(event)
            self._streams.setdefault(event.stream_id, []).append(event)
            self._event_ids.add(event.event_id)
        for command in commands:
            self._commands[(command.program_id, command.idempotency_key)] = normalised_command(command)

    def read_stream(
        self, stream_id: str, after_version: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            stream = self._streams.get(stream_id, [])
            start = max(after_version, 0)
            end = None if limit is None else start + max(limit, 0)
            return stream[start:end]

    def read_tails(self, after_versions: Mapping[str, int]) -> dict[str, list[StoredEvent]]:
        tails = {sid: self.read_stream(sid, after_version=v) for sid, v in after_versions.items()}
        return {sid: events for sid, events in tails.items() if events}

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        with self._lock:
            self._check_open()
            start = max(after_position, 0)
            return self._events[start : start + max(limit, 0)]

    def stream_version(self, stream_id: str) -> int:
        with self._lock:
            self._check_open()
            return len(self._streams.get(stream_id, ()))

    def stream_head_hash(self, stream_id: str) -> bytes:
        with self._lock:
            self._check_open()
            return self._heads([stream_id])[stream_id].hash

    def find_command(self, program_id: str, idempotency_key: str) -> CommandRecord | None:
        with self._lock:
            self._check_open()
            return self._commands.get((program_id, idempotency_key))

    def find_commands(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CommandRecord]:
        with self._lock:
            self._check_open()
            return {k: self._commands[k] for k in keys if k in self._commands}

    def list_streams(self, prefix: str) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(stream_id for stream_id in self._streams if stream_id.startswith(prefix))

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the event store is closed")
