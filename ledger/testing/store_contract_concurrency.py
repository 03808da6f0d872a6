"""The event-store contract's tests under concurrency: appends from many threads keep every stream and the
global order whole, and a reader tailing ``read_all`` misses nothing while slow appends commit."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable

from ledger.eventlog.chain import verify_stream
from ledger.eventlog.port import (
    AppendBatch,
    EventStore,
    StoredEvent,
    StreamAppend,
    WrongExpectedVersion,
)
from ledger.testing.store_contract_base import (
    StoreContractBase,
    command,
    guarded_thread,
    new_event,
    read_everything,
    tail_until_done,
)


class ConcurrencyContract(StoreContractBase):
    """Many writers and a tailing reader at once."""

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

        self.assert_appends_stayed_whole(store, results, tailed)

    def assert_appends_stayed_whole(
        self, store: EventStore[object], results: list[list[StoredEvent]], tailed: list[StoredEvent]
    ) -> None:
        """After the concurrent writers: every append is whole and adjacent in the global order, the tailing
        reader saw exactly that order, and every stream and command is intact."""
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
