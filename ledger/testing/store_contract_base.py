"""The helpers of the event-store contract (:mod:`ledger.testing.store_contract`) and the base class its parts
build on: well-formed events, batches and commands, whole-store reads and checks, and threads for the
concurrency tests."""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ledger.eventlog.chain import GENESIS, canonical_json
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    EventStore,
    NewEvent,
    StoredEvent,
    StreamAppend,
)

T0 = datetime(2026, 3, 1, 2, 0, 0, 123456, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))
ACTOR: Mapping[str, str] = {"channel": "pos", "store_id": "s-01", "terminal_id": "t-7", "operator_id": "op-3"}


def new_event(
    event_id: str,
    *,
    event_type: str = "PointsEarned",
    payload: object | None = None,
    occurred_at: datetime = T0,
    correlation_id: str | None = None,
) -> NewEvent:
    """A well-formed event; the payload defaults to ``{"event": event_id}`` as canonical JSON."""
    return NewEvent(
        event_id=event_id,
        type=event_type,
        schema_version=1,
        occurred_at=occurred_at,
        recorded_at=occurred_at + timedelta(milliseconds=5),
        policy_version=1,
        idempotency_key=None,
        correlation_id=correlation_id,
        causation_id=None,
        actor=ACTOR,
        payload=canonical_json({"event": event_id} if payload is None else payload),
    )


def batch_of(stream_id: str, expected_version: int, *event_ids: str) -> AppendBatch:
    """A batch appending events with ``event_ids`` to one stream."""
    return AppendBatch([StreamAppend(stream_id, expected_version, [new_event(i) for i in event_ids])])


def command(key: str, *, program_id: str = "p1", stream_id: str | None = "member-p1-m1") -> CommandRecord:
    """A command record with key ``key``."""
    return CommandRecord(
        program_id=program_id,
        idempotency_key=key,
        fingerprint=f"fp-{key}",
        response=b"\x00response\xff",
        recorded_at=T0,
        stream_id=stream_id,
    )


def read_everything(store: EventStore[object], page: int = 1000) -> list[StoredEvent]:
    """Every event of the store, paging through ``read_all``."""
    events: list[StoredEvent] = []
    while True:
        chunk = store.read_all(after_position=events[-1].position if events else 0, limit=page)
        if not chunk:
            return events
        events.extend(chunk)


def assert_nothing_written(store: EventStore[object], *stream_ids: str) -> None:
    assert store.read_all() == []
    for stream_id in stream_ids:
        assert store.stream_version(stream_id) == 0
        assert store.stream_head_hash(stream_id) == GENESIS
        assert store.read_stream(stream_id) == []
    assert store.list_streams("") == []


def assert_positions_are_dense_from_one(store: EventStore[object]) -> None:
    """Stronger than the contract (which sparse commit positions also pass), for the SQL-like backends: positions
    count 1, 2, 3, ... with no holes, one append's are consecutive, and a rolled-back append leaves no gap.
    ``store`` must be empty."""

    def fail(_handle: object, _events: list[StoredEvent]) -> None:
        raise RuntimeError("hook failed")

    [a, b] = store.append(batch_of("s", 0, "a", "b"))
    assert (a.position, b.position) == (1, 2)
    written = store.append(
        AppendBatch(
            [StreamAppend("t", 0, [new_event("t1"), new_event("t2")]), StreamAppend("s", 2, [new_event("c")])]
        )
    )
    assert [e.position for e in written] == [3, 4, 5]
    assert store.read_all(after_position=written[0].position - 1) == written
    with pytest.raises(RuntimeError):
        store.append(batch_of("u", 0, "u1", "u2"), in_transaction=fail)
    assert [e.position for e in store.append(batch_of("u", 0, "u1", "u2"))] == [6, 7]
    assert [e.position for e in read_everything(store)] == list(range(1, 8))


def tail_until_done(
    store: EventStore[object], done: threading.Event, page: int, out: list[StoredEvent]
) -> None:
    """Follow ``read_all`` page by page into ``out``, failing if a position ever goes backwards, until
    ``done`` is set and a read finds nothing new."""
    last = 0
    while True:
        finished = done.is_set()
        found = store.read_all(after_position=last, limit=page)
        for event in found:
            if event.position <= last:
                raise AssertionError(f"position {event.position} after {last}")
            last = event.position
        out.extend(found)
        if finished and not found:
            return


def guarded_thread(
    errors: list[BaseException], target: Callable[..., None], *args: object
) -> threading.Thread:
    """A daemon thread running ``target(*args)`` that records what it raises in ``errors``."""

    def run() -> None:
        try:
            target(*args)
        except BaseException as error:
            errors.append(error)

    return threading.Thread(target=run, daemon=True)


class StoreContractBase(abc.ABC):
    """What every part of the contract builds on: the backend's ``make_store``, the ``store`` fixture and the
    switches for backends without ``in_transaction`` hooks."""

    supports_in_transaction: bool = True
    """Whether the backend runs ``in_transaction`` hooks; when False the tests that need one are skipped."""

    @abc.abstractmethod
    def make_store(self, tmp_path: Path) -> EventStore[object]:
        """A new, empty store (under ``tmp_path`` if it needs files)."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore[object]]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    def require_in_transaction(self) -> None:
        """Skip the calling test when the backend cannot run ``in_transaction`` hooks."""
        if not self.supports_in_transaction:
            pytest.skip(
                f"{type(self).__name__}.supports_in_transaction is False: "
                "the backend refuses in_transaction hooks"
            )

    def slow_append(self, store: EventStore[object], batch: AppendBatch, delay: float) -> list[StoredEvent]:
        """Append ``batch`` so that the append takes about ``delay`` seconds longer.

        With ``in_transaction`` support the sleep happens inside the append's transaction (holding it open);
        without, before the append. Override this if the backend has a better way to hold an append open.
        """
        if self.supports_in_transaction:

            def slow(_handle: object, _events: list[StoredEvent]) -> None:
                time.sleep(delay)

            return store.append(batch, in_transaction=slow)
        time.sleep(delay)
        return store.append(batch)
