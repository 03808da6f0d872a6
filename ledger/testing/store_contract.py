"""The contract every event-store backend must pass, as a pytest base class.

A backend's test module subclasses :class:`EventStoreContract` and implements ``make_store``::

    class TestSqliteStore(EventStoreContract):
        def make_store(self, tmp_path: Path) -> EventStore[object]:
            return SqliteEventStore(str(tmp_path / "ledger.db"))

The contract is backend-neutral: positions are only required to be strictly increasing, with one append's
events adjacent in the global order (KurrentDB's commit positions are not dense); a backend that cannot run
``in_transaction`` hooks sets ``supports_in_transaction = False`` and the hook tests are skipped. Stronger
guarantees of one backend (dense positions from 1, say) belong in that backend's own test module.

The helpers :func:`new_event` and :func:`batch_of` build well-formed events and batches for other tests.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ledger.eventlog.chain import GENESIS, canonical_json, envelope, event_hash, verify_stream
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    CommandRecord,
    DuplicateCommand,
    DuplicateEventId,
    EventStore,
    NewEvent,
    StoredEvent,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
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


def tail_until_done(store: EventStore[object], done: threading.Event, page: int, out: list[StoredEvent]) -> None:
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


def guarded_thread(errors: list[BaseException], target: Callable[..., None], *args: object) -> threading.Thread:
    """A daemon thread running ``target(*args)`` that records what it raises in ``errors``."""

    def run() -> None:
        try:
            target(*args)
        except BaseException as error:
            errors.append(error)

    return threading.Thread(target=run, daemon=True)


class EventStoreContract(abc.ABC):
    """Tests every :class:`~ledger.eventlog.port.EventStore` backend must pass."""

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

    # -- concurrency --------------------------------------------------------------------------------------

    WRITERS = 6
    BATCHES_PER_WRITER = 30
    SHARED_STREAMS = ("shared-0", "shared-1")

    def test_concurrent_appends_keep_streams_and_order_whole(self, store: EventStore[object]) -> None:
        errors: list[BaseException] = []
        results: list[list[StoredEvent]] = []
        tailed: list[StoredEvent] = []
        writers_done = threading.Event()

        def writer(number: int) -> None:
            rng = random.Random(number)
            own = f"own-{number}"
            for b in range(self.BATCHES_PER_WRITER):
                tag = f"w{number}-b{b}"
                shared = rng.choice(self.SHARED_STREAMS)
                own_events = [
                    new_event(f"{tag}-own-{i}", correlation_id=tag) for i in range(rng.randint(1, 3))
                ]
                shared_events = [
                    new_event(f"{tag}-sh-{i}", correlation_id=tag) for i in range(rng.randint(1, 2))
                ]
                for _attempt in range(10_000):
                    own_version = store.stream_version(own)
                    shared_version = store.stream_version(shared)
                    time.sleep(0)
                    appends = [StreamAppend(shared, shared_version, shared_events)]
                    appends.insert(rng.randint(0, 1), StreamAppend(own, own_version, own_events))
                    try:
                        results.append(store.append(AppendBatch(appends, [command(tag, stream_id=own)])))
                        break
                    except WrongExpectedVersion:
                        continue
                else:
                    raise AssertionError(f"{tag} never got through")

        def reader() -> None:
            tail_until_done(store, writers_done, 17, tailed)

        def guarded(target: Callable[..., None], *args: object) -> threading.Thread:
            return guarded_thread(errors, target, *args)

        writer_threads = [guarded(writer, n) for n in range(self.WRITERS)]
        reader_thread = guarded(reader)
        reader_thread.start()
        for thread in writer_threads:
            thread.start()
        for thread in writer_threads:
            thread.join(timeout=300)
            assert not thread.is_alive(), "a writer hung"
        writers_done.set()
        reader_thread.join(timeout=60)
        assert not reader_thread.is_alive(), "the reader hung"
        assert errors == []

        final = read_everything(store, page=50)
        assert len(results) == self.WRITERS * self.BATCHES_PER_WRITER
        assert len(final) == sum(len(result) for result in results)
        positions = [e.position for e in final]
        assert all(a < b for a, b in itertools.pairwise(positions))
        assert [(e.position, e.event_id) for e in tailed] == [(e.position, e.event_id) for e in final]

        # One append's events are adjacent in the global order: no other event lies between them. (Positions
        # need not be consecutive integers: KurrentDB's $all positions are not.)
        by_position = {e.position: e for e in final}
        index = {e.position: i for i, e in enumerate(final)}
        for result in results:
            start = index[result[0].position]
            assert final[start : start + len(result)] == result
            assert [by_position[e.position] for e in result] == result
            tags = {e.correlation_id for e in result}
            assert len(tags) == 1
        for tag in {e.correlation_id for e in final}:
            mine = [index[e.position] for e in final if e.correlation_id == tag]
            assert mine == list(range(mine[0], mine[0] + len(mine)))

        streams = store.list_streams("")
        expected_streams = {f"own-{n}" for n in range(self.WRITERS)} | set(self.SHARED_STREAMS)
        assert set(streams) <= expected_streams
        assert {f"own-{n}" for n in range(self.WRITERS)} <= set(streams)
        for stream_id in streams:
            events = store.read_stream(stream_id)
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            assert store.stream_version(stream_id) == len(events)
            assert verify_stream(events, head_hash=store.stream_head_hash(stream_id)) is None
        for n in range(self.WRITERS):
            for b in range(self.BATCHES_PER_WRITER):
                assert store.find_command("p1", f"w{n}-b{b}") is not None

    def test_a_tailing_reader_misses_nothing_while_slow_transactions_commit(
        self, store: EventStore[object]
    ) -> None:
        """Appends that take a while (:meth:`slow_append`: a slow ``in_transaction`` hook where the backend
        runs hooks) and finish in any order: a reader tailing ``read_all`` must still see every event, each
        exactly once, in order.

        A backend that hands out positions before commit (a plain sequence) fails here: a reader passes a
        later append's position while an earlier one is still open, and never sees the earlier one.
        """
        writers, appends_each = 4, 12
        errors: list[BaseException] = []
        tailed: list[StoredEvent] = []
        writers_done = threading.Event()

        def writer(number: int) -> None:
            rng = random.Random(1000 + number)
            version = 0
            for n in range(appends_each):
                events = [new_event(f"slow-w{number}-{n}-{i}") for i in range(rng.randint(1, 3))]
                appends = [StreamAppend(f"slow-{number}", version, events)]
                self.slow_append(store, AppendBatch(appends), rng.random() * 0.004)
                version += len(events)

        def reader() -> None:
            tail_until_done(store, writers_done, 5, tailed)

        def guarded(target: Callable[..., None], *args: object) -> threading.Thread:
            return guarded_thread(errors, target, *args)

        reader_thread = guarded(reader)
        writer_threads = [guarded(writer, n) for n in range(writers)]
        reader_thread.start()
        for thread in writer_threads:
            thread.start()
        for thread in writer_threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a writer hung"
        writers_done.set()
        reader_thread.join(timeout=60)
        assert not reader_thread.is_alive(), "the reader hung"
        assert errors == [], errors
        final = read_everything(store)
        assert [e.event_id for e in tailed] == [e.event_id for e in final]
        assert len({e.event_id for e in final}) == len(final)
        for number in range(writers):
            assert store.stream_version(f"slow-{number}") == len(store.read_stream(f"slow-{number}"))
