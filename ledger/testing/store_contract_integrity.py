"""The event-store contract's tests of what keeps the log whole: recorded commands and duplicate keys or
event ids, refused naive times, the hash chain and its verification, and a closed store."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timedelta

import pytest

from ledger.eventlog.chain import GENESIS, canonical_json, envelope, event_hash, verify_stream
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    EventStore,
    StoredEvent,
    StoreError,
    StreamAppend,
)
from ledger.testing.store_contract_base import (
    SHANGHAI,
    T0,
    StoreContractBase,
    assert_nothing_written,
    batch_of,
    command,
    new_event,
)


class IntegrityContract(StoreContractBase):
    """Commands, duplicates, the hash chain and the store's lifecycle."""

    # -- commands and ids ---------------------------------------------------------------------------------

    def test_find_command_returns_the_record(self, store: EventStore[object]) -> None:
        record = CommandRecord(
            program_id="p1",
            idempotency_key="k-1",
            fingerprint="sha256:abc",
            response=bytes(range(256)),
            recorded_at=datetime(2026, 3, 1, 10, 0, 0, 42, tzinfo=SHANGHAI),
            stream_id=None,
        )
        store.append(AppendBatch([StreamAppend("s", 0, [new_event("a")])], [record]))
        found = store.find_command("p1", "k-1")
        assert found == record
        assert found is not None
        assert found.recorded_at.utcoffset() == timedelta(0)
        assert store.find_command("p2", "k-1") is None
        assert store.find_command("p1", "k-2") is None

    def test_find_commands_answers_many_keys_at_once(self, store: EventStore[object]) -> None:
        store.append(AppendBatch([], [command("k1"), command("k2", program_id="p2", stream_id=None)]))
        found = store.find_commands([("p1", "k1"), ("p2", "k2"), ("p1", "k2"), ("p1", "k1")])
        assert set(found) == {("p1", "k1"), ("p2", "k2")}
        assert found[("p1", "k1")] == store.find_command("p1", "k1")
        assert store.find_commands([]) == {}

    def test_commands_alone_can_be_recorded(self, store: EventStore[object]) -> None:
        assert store.append(AppendBatch([], [command("k1")])) == []
        assert store.find_command("p1", "k1") == command("k1")

    def test_duplicate_command_writes_nothing(self, store: EventStore[object]) -> None:
        store.append(AppendBatch([StreamAppend("s", 0, [new_event("a")])], [command("k1")]))
        again = AppendBatch(
            [StreamAppend("s", 1, [new_event("b")]), StreamAppend("t", 0, [new_event("c")])],
            [command("k0"), command("k1"), command("k2")],
        )
        with pytest.raises(DuplicateCommand) as raised:
            store.append(again)
        assert (raised.value.program_id, raised.value.idempotency_key) == ("p1", "k1")
        assert [e.event_id for e in store.read_all()] == ["a"]
        assert store.stream_version("t") == 0
        assert store.find_command("p1", "k0") is None
        assert store.find_command("p1", "k2") is None

    def test_duplicate_command_within_a_batch(self, store: EventStore[object]) -> None:
        with pytest.raises(DuplicateCommand):
            store.append(
                AppendBatch([StreamAppend("s", 0, [new_event("a")])], [command("k1"), command("k1")])
            )
        assert_nothing_written(store, "s")
        assert store.find_command("p1", "k1") is None

    def test_the_same_key_in_another_program_is_another_command(self, store: EventStore[object]) -> None:
        store.append(AppendBatch([], [command("k1", program_id="p1")]))
        store.append(AppendBatch([], [command("k1", program_id="p2")]))
        assert store.find_command("p2", "k1") == command("k1", program_id="p2")

    def test_duplicate_event_id_writes_nothing(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", 0, "a"))
        with pytest.raises(DuplicateEventId) as raised:
            store.append(
                AppendBatch([StreamAppend("t", 0, [new_event("t1"), new_event("a")])], [command("k")])
            )
        assert raised.value.event_id == "a"
        with pytest.raises(DuplicateEventId):
            store.append(batch_of("u", 0, "u1", "u1"))
        assert [e.event_id for e in store.read_all()] == ["a"]
        assert store.list_streams("") == ["s"]
        assert store.find_command("p1", "k") is None

    def test_naive_times_are_refused(self, store: EventStore[object]) -> None:
        naive = dataclasses.replace(new_event("a"), occurred_at=T0.replace(tzinfo=None))
        with pytest.raises(ValueError, match="timezone"):
            store.append(AppendBatch([StreamAppend("s", 0, [naive])]))
        assert_nothing_written(store, "s")

    # -- the hash chain -----------------------------------------------------------------------------------

    def _five(self, store: EventStore[object]) -> list[StoredEvent]:
        store.append(batch_of("s", 0, "e1", "e2"))
        store.append(batch_of("other", 0, "o1"))
        store.append(batch_of("s", 2, "e3", "e4", "e5"))
        return store.read_stream("s")

    def test_hashes_follow_the_definition(self, store: EventStore[object]) -> None:
        events = self._five(store)
        prev = GENESIS
        for event in events:
            assert event.prev_hash == prev
            body = canonical_json(envelope(event.stream_id, event.version, event))
            assert event.hash == hashlib.sha256(prev + body + event.payload).digest()
            assert event.hash == event_hash(prev, event.stream_id, event.version, event)
            prev = event.hash
        assert store.stream_head_hash("s") == prev
        assert verify_stream(events) is None
        assert verify_stream(events, head_version=5, head_hash=store.stream_head_hash("s")) is None
        assert verify_stream(events[2:], prev_hash=events[1].hash, after_version=2) is None

    def test_verify_names_a_changed_payload(self, store: EventStore[object]) -> None:
        events = self._five(store)
        events[2] = dataclasses.replace(events[2], payload=canonical_json({"points": 999_999}))
        broken = verify_stream(events)
        assert broken is not None
        assert (broken.stream_id, broken.version, broken.position) == ("s", 3, events[2].position)
        assert "hash" in broken.reason

    def test_verify_names_a_changed_envelope_field(self, store: EventStore[object]) -> None:
        events = self._five(store)
        changes = (
            dataclasses.replace(events[3], type="PointsRedeemed"),
            dataclasses.replace(events[3], occurred_at=events[3].occurred_at + timedelta(microseconds=1)),
            dataclasses.replace(events[3], actor={**events[3].actor, "operator_id": "op-4"}),
            dataclasses.replace(events[3], policy_version=2),
            dataclasses.replace(events[3], stream_id="other"),
        )
        for changed in changes:
            broken = verify_stream([*events[:3], changed, events[4]])
            assert broken is not None
            assert broken.version == 4, changed

    def test_verify_names_a_deleted_event(self, store: EventStore[object]) -> None:
        events = self._five(store)
        del events[2]
        broken = verify_stream(events)
        assert broken is not None
        assert (broken.version, broken.position) == (3, events[2].position)
        first = verify_stream(events[1:])
        assert first is not None
        assert first.version == 1

    def test_verify_names_a_deleted_last_event_given_the_head(self, store: EventStore[object]) -> None:
        events = self._five(store)
        assert verify_stream(events[:-1]) is None
        broken = verify_stream(events[:-1], head_version=store.stream_version("s"))
        assert broken is not None
        assert (broken.version, broken.position) == (5, None)
        by_hash = verify_stream(events[:-1], head_hash=store.stream_head_hash("s"))
        assert by_hash is not None

    def test_verify_names_reordered_events(self, store: EventStore[object]) -> None:
        events = self._five(store)
        swapped = [events[0], events[2], events[1], events[3], events[4]]
        broken = verify_stream(swapped)
        assert broken is not None
        assert broken.version == 2
        renumbered = [
            events[0],
            dataclasses.replace(events[2], version=2, position=events[1].position),
            dataclasses.replace(events[1], version=3, position=events[2].position),
            events[3],
            events[4],
        ]
        broken = verify_stream(renumbered)
        assert broken is not None
        assert broken.version == 2
        moved = list(events)
        moved[1], moved[2] = (
            dataclasses.replace(events[1], position=events[2].position),
            dataclasses.replace(events[2], position=events[1].position),
        )
        broken = verify_stream(moved)
        assert broken is not None
        assert broken.version == 3
        assert "reordered" in broken.reason

    # -- lifecycle ----------------------------------------------------------------------------------------

    def test_a_closed_store_refuses_calls(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", 0, "a"))
        store.close()
        store.close()
        with pytest.raises(StoreError):
            store.append(batch_of("s", 1, "b"))
        with pytest.raises(StoreError):
            store.read_all()
