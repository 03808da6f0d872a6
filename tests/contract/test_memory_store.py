"""The in-memory store against the event-store contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.adapters.memory.store import InMemoryEventStore, MemoryTransaction
from ledger.eventlog.port import EventStore, StoredEvent
from ledger.testing.store_contract import (
    EventStoreContract,
    assert_positions_are_dense_from_one,
    batch_of,
)


class TestInMemoryEventStore(EventStoreContract):
    def make_store(self, tmp_path: Path) -> EventStore[object]:
        return InMemoryEventStore()


@pytest.fixture
def store() -> Iterator[InMemoryEventStore]:
    with InMemoryEventStore() as store:
        yield store


def test_positions_are_dense_from_one(store: InMemoryEventStore) -> None:
    assert_positions_are_dense_from_one(store)


def test_on_commit_callbacks_run_only_when_the_append_commits() -> None:
    store = InMemoryEventStore()
    applied: list[str] = []

    def project(tx: MemoryTransaction, events: list[StoredEvent]) -> None:
        tx.on_commit(lambda: applied.extend(e.event_id for e in events))

    def project_then_fail(tx: MemoryTransaction, events: list[StoredEvent]) -> None:
        project(tx, events)
        raise RuntimeError("read model refused")

    store.append(batch_of("s", 0, "a"), in_transaction=project)
    with pytest.raises(RuntimeError):
        store.append(batch_of("s", 1, "b"), in_transaction=project_then_fail)
    assert applied == ["a"]
    assert store.stream_version("s") == 1


def test_returned_events_cannot_be_changed_through_their_actor() -> None:
    with InMemoryEventStore() as store:
        [event] = store.append(batch_of("s", 0, "a"))
        with pytest.raises(TypeError):
            event.actor["channel"] = "web"  # type: ignore[index]
