"""The in-memory store against the event-store contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.store.memory import InMemoryEventStore, MemoryTransaction
from ledger.store.port import AppendBatch, EventStore, StoredEvent, StreamAppend
from ledger.store.testing import EventStoreContract, batch_of, new_event, read_everything


class TestInMemoryEventStore(EventStoreContract):
    def make_store(self, tmp_path: Path) -> EventStore[object]:
        return InMemoryEventStore()


@pytest.fixture
def store() -> Iterator[InMemoryEventStore]:
    with InMemoryEventStore() as store:
        yield store


def _raise(_tx: MemoryTransaction, _events: list[StoredEvent]) -> None:
    raise RuntimeError("hook failed")


def test_positions_are_dense_from_one(store: InMemoryEventStore) -> None:
    """Stronger than the contract (which sparse commit positions also pass): positions count 1, 2, 3, ...
    with no holes, one append's are consecutive, and a rolled-back append leaves no gap."""
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
        store.append(batch_of("u", 0, "u1", "u2"), in_transaction=_raise)
    assert [e.position for e in store.append(batch_of("u", 0, "u1", "u2"))] == [6, 7]
    assert [e.position for e in read_everything(store)] == list(range(1, 8))


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
