"""The event-store contract's tests of appending and reading: versions, expected versions, batches over
several streams, the ``in_transaction`` hook, ``read_all`` paging and ``list_streams``."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from ledger.eventlog.chain import GENESIS, canonical_json
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    EventStore,
    NewEvent,
    StoredEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from ledger.testing.store_contract_base import (
    SHANGHAI,
    T0,
    StoreContractBase,
    assert_nothing_written,
    batch_of,
    command,
    new_event,
    read_everything,
)


class AppendAndReadContract(StoreContractBase):
    """Appending and reading back: what one caller sees."""

    # -- append and read ----------------------------------------------------------------------------------

    def test_round_trip_preserves_every_field(self, store: EventStore[object]) -> None:
        full = NewEvent(
            event_id="evt-1",
            type="PointsEarned",
            schema_version=3,
            occurred_at=datetime(2026, 3, 1, 10, 0, 0, 1, tzinfo=SHANGHAI),
            recorded_at=datetime(2026, 3, 1, 2, 0, 0, 999999, tzinfo=UTC),
            policy_version=7,
            idempotency_key="idem-1",
            correlation_id="corr-1",
            causation_id="cause-1",
            actor={"channel": "小程序", "store_id": "门店-01"},
            payload=canonical_json({"points": 120, "note": "积分"}),
        )
        sparse = NewEvent("evt-2", "TierReviewed", 1, T0, T0, None, None, None, None, {}, b"{}")
        [first, second] = store.append(AppendBatch([StreamAppend("member-p1-m1", 0, [full, sparse])]))

        for stored, given in ((first, full), (second, sparse)):
            for field in dataclasses.fields(NewEvent):
                assert getattr(stored, field.name) == getattr(given, field.name), field.name
            assert stored.occurred_at.utcoffset() == timedelta(0)
            assert stored.recorded_at.utcoffset() == timedelta(0)
            assert stored.stream_id == "member-p1-m1"
        assert (first.version, second.version) == (1, 2)
        assert 1 <= first.position < second.position
        assert store.read_stream("member-p1-m1") == [first, second]
        assert store.read_all() == [first, second]
        assert store.read_all(after_position=first.position) == [second]
        read = store.read_all()[0]
        assert dict(read.actor) == {"channel": "小程序", "store_id": "门店-01"}
        assert read.occurred_at == datetime(2026, 3, 1, 2, 0, 0, 1, tzinfo=UTC)
        assert read.payload == full.payload

    def test_unknown_stream(self, store: EventStore[object]) -> None:
        assert store.stream_version("nope") == 0
        assert store.stream_head_hash("nope") == GENESIS
        assert store.read_stream("nope") == []
        assert store.read_all() == []
        assert store.find_command("p1", "k") is None

    def test_versions_are_one_based_and_contiguous(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", 0, "a", "b"))
        store.append(batch_of("s", 2, "c", "d", "e"))
        events = store.read_stream("s")
        assert [e.version for e in events] == [1, 2, 3, 4, 5]
        assert [e.event_id for e in events] == ["a", "b", "c", "d", "e"]
        assert store.stream_version("s") == 5
        assert store.stream_head_hash("s") == events[-1].hash
        assert [e.version for e in store.read_stream("s", after_version=2)] == [3, 4, 5]
        assert [e.version for e in store.read_stream("s", after_version=1, limit=2)] == [2, 3]
        assert store.read_stream("s", after_version=5) == []

    def test_wrong_expected_version_writes_nothing(self, store: EventStore[object]) -> None:
        batch = AppendBatch(
            [StreamAppend("a", 0, [new_event("a1")]), StreamAppend("b", 5, [new_event("b1")])],
            [command("k1")],
        )
        with pytest.raises(WrongExpectedVersion) as raised:
            store.append(batch)
        assert (raised.value.stream_id, raised.value.expected, raised.value.actual) == ("b", 5, 0)
        assert_nothing_written(store, "a", "b")
        assert store.find_command("p1", "k1") is None

    def test_wrong_expected_version_on_existing_stream(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", 0, "a", "b"))
        for stale in (0, 1, 3):
            with pytest.raises(WrongExpectedVersion) as raised:
                store.append(batch_of("s", stale, f"x{stale}"))
            assert (raised.value.expected, raised.value.actual) == (stale, 2)
        assert [e.event_id for e in store.read_all()] == ["a", "b"]

    def test_expected_version_zero_creates_a_stream_once(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", 0, "a"))
        with pytest.raises(WrongExpectedVersion):
            store.append(batch_of("s", 0, "b"))
        assert store.stream_version("s") == 1

    def test_any_skips_the_check(self, store: EventStore[object]) -> None:
        store.append(batch_of("s", ANY, "a"))
        store.append(batch_of("s", ANY, "b", "c"))
        assert [e.version for e in store.read_stream("s")] == [1, 2, 3]

    def test_an_empty_append_is_a_version_check(self, store: EventStore[object]) -> None:
        store.append(batch_of("guard", 0, "g1"))
        with pytest.raises(WrongExpectedVersion):
            store.append(AppendBatch([StreamAppend("guard", 0, []), StreamAppend("s", 0, [new_event("a")])]))
        assert store.stream_version("s") == 0
        store.append(AppendBatch([StreamAppend("guard", 1, []), StreamAppend("s", 0, [new_event("a")])]))
        assert store.stream_version("s") == 1
        assert store.stream_version("guard") == 1
        assert store.append(AppendBatch([StreamAppend("empty", 0, [])])) == []
        assert store.list_streams("empty") == []

    def test_two_appends_to_one_stream_apply_in_order(self, store: EventStore[object]) -> None:
        batch = AppendBatch([StreamAppend("s", 0, [new_event("a")]), StreamAppend("s", 1, [new_event("b")])])
        assert [e.version for e in store.append(batch)] == [1, 2]
        stale = AppendBatch([StreamAppend("s", 2, [new_event("c")]), StreamAppend("s", 2, [new_event("d")])])
        with pytest.raises(WrongExpectedVersion):
            store.append(stale)
        assert store.stream_version("s") == 2

    def test_multi_stream_batch_is_written_together_in_batch_order(self, store: EventStore[object]) -> None:
        [a1] = store.append(batch_of("a", 0, "a1"))
        batch = AppendBatch(
            [
                StreamAppend("b", 0, [new_event("b1"), new_event("b2")]),
                StreamAppend("a", 1, [new_event("a2")]),
                StreamAppend("c", ANY, [new_event("c1")]),
            ],
            [command("k1"), command("k2", stream_id=None)],
        )
        written = store.append(batch)
        assert [(e.stream_id, e.version, e.event_id) for e in written] == [
            ("b", 1, "b1"),
            ("b", 2, "b2"),
            ("a", 2, "a2"),
            ("c", 1, "c1"),
        ]
        positions = [e.position for e in written]
        assert a1.position < positions[0]
        assert all(a < b for a, b in itertools.pairwise(positions))
        # Adjacent in the global order: nothing lies between a1 and the batch, or among the batch's events.
        assert store.read_all(after_position=a1.position) == written
        assert store.read_all() == [a1, *written]
        assert store.find_command("p1", "k1") is not None
        assert store.find_command("p1", "k2") is not None

    def test_read_tails_reads_many_streams_after_their_versions(self, store: EventStore[object]) -> None:
        store.append(batch_of("a", 0, "a1", "a2", "a3"))
        store.append(batch_of("b", 0, "b1"))
        tails = store.read_tails({"a": 1, "b": 1, "c": 0})
        assert {sid: [e.event_id for e in events] for sid, events in tails.items()} == {"a": ["a2", "a3"]}
        assert tails["a"] == store.read_stream("a", after_version=1)
        assert store.read_tails({}) == {}
        assert [e.event_id for e in store.read_tails({"a": 0, "b": 0})["b"]] == ["b1"]

    # -- the in-transaction hook --------------------------------------------------------------------------

    def test_in_transaction_gets_the_events(self, store: EventStore[object]) -> None:
        self.require_in_transaction()
        calls: list[list[StoredEvent]] = []

        def hook(_handle: object, events: list[StoredEvent]) -> None:
            calls.append(events)

        written = store.append(batch_of("s", 0, "a", "b"), in_transaction=hook)
        assert calls == [written]
        assert store.read_all() == written

    def test_in_transaction_raising_rolls_everything_back(self, store: EventStore[object]) -> None:
        self.require_in_transaction()
        [a] = store.append(batch_of("s", 0, "a"))

        class Boom(Exception):
            pass

        def hook(_handle: object, _events: list[StoredEvent]) -> None:
            raise Boom

        batch = AppendBatch(
            [StreamAppend("s", 1, [new_event("b")]), StreamAppend("t", 0, [new_event("c")])], [command("k1")]
        )
        with pytest.raises(Boom):
            store.append(batch, in_transaction=hook)
        assert [e.event_id for e in store.read_all()] == ["a"]
        assert store.stream_version("s") == 1
        assert store.stream_version("t") == 0
        assert store.find_command("p1", "k1") is None
        written = store.append(batch)
        positions = [e.position for e in written]
        assert a.position < positions[0]
        assert all(x < y for x, y in itertools.pairwise(positions))
        assert store.read_all() == [a, *written]

    # -- read_all and list_streams ------------------------------------------------------------------------

    def test_read_all_pages_in_increasing_position_order(self, store: EventStore[object]) -> None:
        for n in range(10):
            store.append(
                AppendBatch(
                    [
                        StreamAppend(f"s{n % 3}", ANY, [new_event(f"e{n}-a"), new_event(f"e{n}-b")]),
                        StreamAppend(f"t{n % 2}", ANY, [new_event(f"e{n}-c")]),
                    ]
                )
            )
        everything = store.read_all(limit=1000)
        assert len(everything) == 30
        positions = [e.position for e in everything]
        assert positions == sorted(set(positions))
        paged = read_everything(store, page=7)
        assert paged == everything
        assert store.read_all(after_position=positions[4], limit=3) == everything[5:8]
        assert store.read_all(after_position=positions[-1]) == []
        assert store.read_all(limit=0) == []

    def test_list_streams_by_literal_prefix(self, store: EventStore[object]) -> None:
        for stream_id in (
            "member-p1-b",
            "member-p1-a",
            "member-p10-a",
            "program-p1",
            "member-p1_%x",
            "memberX",
        ):
            store.append(batch_of(stream_id, 0, f"e-{stream_id}"))
        assert store.list_streams("member-p1-") == ["member-p1-a", "member-p1-b"]
        assert store.list_streams("member-p1") == [
            "member-p1-a",
            "member-p1-b",
            "member-p10-a",
            "member-p1_%x",
        ]
        assert store.list_streams("member-p1_") == ["member-p1_%x"]
        assert store.list_streams("program-") == ["program-p1"]
        assert store.list_streams("nothing") == []
        assert len(store.list_streams("")) == 6
