"""The PostgreSQL store against the event-store contract, plus what only PostgreSQL can show.

Every test runs in a schema of its own (``fresh_schema``). Without a server the tests are skipped, except in
CI (``CI`` set) where they fail.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.adapters.postgres.lease import AdvisoryLease
from ledger.adapters.postgres.migrations import MIGRATIONS, current_version, migrate
from ledger.adapters.postgres.store import PostgresEventStore
from ledger.eventlog.chain import verify_stream
from ledger.eventlog.port import (
    ANY,
    AppendBatch,
    EventStore,
    StoredEvent,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
)
from ledger.testing.postgres import fresh_schema, postgres_url, require_postgres
from ledger.testing.store_contract import (
    EventStoreContract,
    assert_positions_are_dense_from_one,
    batch_of,
    command,
    new_event,
    read_everything,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def url() -> Iterator[str]:
    require_postgres()
    with fresh_schema(postgres_url()) as schema_url:
        yield schema_url


@pytest.fixture
def store(url: str) -> Iterator[PostgresEventStore]:
    with PostgresEventStore(url) as store:
        yield store


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[EventStore[object]]:
        require_postgres()
        with fresh_schema(postgres_url()) as schema_url:
            store = PostgresEventStore(schema_url, max_size=10)
            try:
                yield store
            finally:
                store.close()

    def make_store(self, tmp_path: Path) -> EventStore[object]:  # pragma: no cover - the fixture is used
        raise NotImplementedError("the store fixture opens the store in a fresh schema")


# -- schema ---------------------------------------------------------------------------------------------------------


def test_migrations_are_versioned_and_applied_once(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert current_version(conn) == 0
        assert migrate(conn) == [m.version for m in MIGRATIONS]
        assert current_version(conn) == MIGRATIONS[-1].version
        first = conn.execute("SELECT version, description, applied_at FROM schema_migrations").fetchall()
        assert migrate(conn) == []
        assert (
            conn.execute("SELECT version, description, applied_at FROM schema_migrations").fetchall() == first
        )
    for _ in range(2):
        PostgresEventStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(MIGRATIONS),)


def test_replicas_starting_together_migrate_once(url: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                start.wait()
                results.append(migrate(conn))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]


def test_a_schema_from_newer_code_is_refused(url: str) -> None:
    PostgresEventStore(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, description) VALUES (999, 'from the future')")
    with pytest.raises(StoreError, match="999"):
        PostgresEventStore(url)


def test_an_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        PostgresEventStore(
            "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1", max_size=1, open_timeout=2
        )


# -- positions --------------------------------------------------------------------------------------------------


def test_positions_are_consecutive_per_append_and_have_no_holes(store: PostgresEventStore) -> None:
    store.append(batch_of("s", 0, "a", "b", "c"))
    with pytest.raises(WrongExpectedVersion):
        store.append(batch_of("s", 0, "x"))
    with pytest.raises(RuntimeError):
        store.append(batch_of("t", 0, "y", "z"), in_transaction=_raise)
    store.append(
        AppendBatch([StreamAppend("t", 0, [new_event("d")]), StreamAppend("s", 3, [new_event("e")])])
    )
    assert [(e.event_id, e.position) for e in store.read_all()] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 4),
        ("e", 5),
    ]


def _raise(_conn: object, _events: list[StoredEvent]) -> None:
    raise RuntimeError("hook failed")


def test_positions_are_dense_from_one(store: PostgresEventStore) -> None:
    assert_positions_are_dense_from_one(store)


def test_a_reader_never_passes_an_uncommitted_position(store: PostgresEventStore) -> None:
    """The sequence problem: A takes positions first and is still open when B wants to commit.

    B must not commit (and become visible) at positions above A's while A is open: a reader that saw B's
    positions would skip A's forever. With the counter row, B waits for A; every snapshot a reader takes
    is a prefix of the global order.
    """
    store.append(batch_of("warm", 0, "w"))
    inside = threading.Event()
    finish = threading.Event()
    results: dict[str, list[StoredEvent]] = {}

    def hold_open(_conn: psycopg.Connection[Any], events: list[StoredEvent]) -> None:
        inside.set()
        assert finish.wait(30)

    a = threading.Thread(
        target=lambda: results.__setitem__(
            "a", store.append(batch_of("a", 0, "a1", "a2"), in_transaction=hold_open)
        )
    )
    a.start()
    assert inside.wait(30)
    b = threading.Thread(target=lambda: results.__setitem__("b", store.append(batch_of("b", 0, "b1"))))
    b.start()
    time.sleep(0.3)  # B has had every chance to commit ahead of A
    assert [e.event_id for e in store.read_all()] == ["w"]
    assert "b" not in results
    with store.connection() as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert waiting is not None and waiting[0] >= 1
    finish.set()
    a.join(30)
    b.join(30)
    assert [e.position for e in results["a"]] == [2, 3]
    assert [e.position for e in results["b"]] == [4]
    assert [e.event_id for e in read_everything(store)] == ["w", "a1", "a2", "b1"]


def test_appends_that_write_no_event_do_not_wait_for_the_counter(store: PostgresEventStore) -> None:
    store.append(batch_of("guard", 0, "g"))
    inside = threading.Event()
    finish = threading.Event()

    def hold_open(_conn: psycopg.Connection[Any], _events: list[StoredEvent]) -> None:
        inside.set()
        assert finish.wait(30)

    a = threading.Thread(target=lambda: store.append(batch_of("a", 0, "a1"), in_transaction=hold_open))
    a.start()
    try:
        assert inside.wait(30)
        assert store.append(AppendBatch([StreamAppend("guard", 1, [])], [command("k")])) == []
        assert store.find_command("p1", "k") is not None
    finally:
        finish.set()
        a.join(30)


# -- replicas -------------------------------------------------------------------------------------------------------


def test_two_replicas_race_for_each_version_and_exactly_one_wins(url: str) -> None:
    rounds = 40
    stores = [PostgresEventStore(url, max_size=2) for _ in range(2)]
    outcomes: list[list[str]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)
    try:

        def replica(n: int) -> None:
            try:
                for version in range(rounds):
                    barrier.wait(timeout=30)
                    try:
                        stores[n].append(
                            AppendBatch(
                                [StreamAppend("contested", version, [new_event(f"r{n}-v{version}")])],
                                [command(f"r{n}-v{version}")],
                            )
                        )
                        outcomes[n].append("won")
                    except WrongExpectedVersion as error:
                        assert (error.expected, error.actual) == (version, version + 1)
                        outcomes[n].append("lost")
            except BaseException as error:
                errors.append(error)
                barrier.abort()

        threads = [threading.Thread(target=replica, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        for version in range(rounds):
            assert sorted(outcome[version] for outcome in outcomes) == ["lost", "won"]
        events = stores[0].read_stream("contested")
        assert [e.version for e in events] == list(range(1, rounds + 1))
        assert verify_stream(events, head_hash=stores[1].stream_head_hash("contested")) is None
        winners = {e.event_id for e in events}
        for version in range(rounds):
            for n in range(2):
                recorded = stores[1].find_command("p1", f"r{n}-v{version}") is not None
                assert recorded == (f"r{n}-v{version}" in winners)
    finally:
        for s in stores:
            s.close()


def _replica_process(url: str, number: int, batches: int, out: Any) -> None:
    """One replica in its own process: appends to its own stream and a shared one, retrying conflicts."""
    with PostgresEventStore(url, max_size=2) as store:
        conflicts = 0
        for b in range(batches):
            tag = f"p{number}-b{b}"
            while True:
                appends = [
                    StreamAppend(f"own-{number}", b, [new_event(f"{tag}-own", correlation_id=tag)]),
                    StreamAppend(
                        "shared",
                        store.stream_version("shared"),
                        [new_event(f"{tag}-sh-{i}", correlation_id=tag) for i in range(2)],
                    ),
                ]
                try:
                    store.append(AppendBatch(appends, [command(tag)]))
                    break
                except WrongExpectedVersion:
                    conflicts += 1
        out.put(conflicts)


def test_replica_processes_append_concurrently(url: str) -> None:
    PostgresEventStore(url).close()  # migrate once, before the race
    processes, batches = 3, 25
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_replica_process, args=(url, n, batches, queue)) for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    conflicts = [queue.get(timeout=5) for _ in workers]
    with PostgresEventStore(url) as store:
        everything = read_everything(store)
        assert len(everything) == processes * batches * 3
        assert [e.position for e in everything] == list(range(1, len(everything) + 1))
        for tag in {e.correlation_id for e in everything}:
            mine = [e.position for e in everything if e.correlation_id == tag]
            assert mine == list(range(mine[0], mine[0] + 3))
        shared = store.read_stream("shared")
        assert len(shared) == processes * batches * 2
        assert verify_stream(shared, head_hash=store.stream_head_hash("shared")) is None
    assert sum(conflicts) >= 0


def test_concurrent_appends_have_consecutive_positions_per_append(store: PostgresEventStore) -> None:
    """The stronger form of the contract's concurrency check: one append's positions are consecutive."""
    results: list[list[StoredEvent]] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for b in range(20):
            written = store.append(
                AppendBatch(
                    [
                        StreamAppend(f"w{n}", ANY, [new_event(f"w{n}-b{b}-{i}") for i in range(1 + b % 3)]),
                        StreamAppend("shared", ANY, [new_event(f"w{n}-b{b}-sh")]),
                    ]
                )
            )
            with lock:
                results.append(written)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    everything = read_everything(store)
    assert [e.position for e in everything] == list(range(1, len(everything) + 1))
    for written in results:
        start = written[0].position
        assert [e.position for e in written] == list(range(start, start + len(written)))
    assert [e.version for e in store.read_stream("shared")] == list(range(1, 101))


# -- the in-transaction hook and read models -------------------------------------------------------------------


def test_read_models_commit_and_roll_back_with_the_events(store: PostgresEventStore) -> None:
    with store.connection() as conn:
        conn.execute("CREATE TABLE balance (stream_id text PRIMARY KEY, events bigint NOT NULL)")

    def project(tx: psycopg.Connection[Any], events: list[StoredEvent]) -> None:
        with tx.cursor() as cur:
            cur.executemany(
                "INSERT INTO balance VALUES (%s, 1) ON CONFLICT (stream_id) DO UPDATE SET events = balance.events + 1",
                [(e.stream_id,) for e in events],
            )

    def project_then_fail(tx: psycopg.Connection[Any], events: list[StoredEvent]) -> None:
        project(tx, events)
        raise RuntimeError("read model refused")

    store.append(batch_of("s", 0, "a", "b"), in_transaction=project)
    with pytest.raises(RuntimeError):
        store.append(batch_of("s", 2, "c"), in_transaction=project_then_fail)
    with store.connection() as conn:
        assert conn.execute("SELECT stream_id, events FROM balance").fetchall() == [("s", 2)]
    assert store.stream_version("s") == 2


def test_a_hook_sql_error_propagates_and_rolls_back(store: PostgresEventStore) -> None:
    def bad_sql(tx: psycopg.Connection[Any], _events: list[StoredEvent]) -> None:
        tx.execute("SELECT * FROM no_such_table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        store.append(batch_of("s", 0, "a"), in_transaction=bad_sql)
    assert store.read_all() == []
    assert store.stream_version("s") == 0


def test_a_hook_that_ends_the_transaction_is_an_error(store: PostgresEventStore) -> None:
    def roll_back(tx: psycopg.Connection[Any], _events: list[StoredEvent]) -> None:
        tx.execute("ROLLBACK")

    with pytest.raises(StoreError, match="hook"):
        store.append(batch_of("s", 0, "a"), in_transaction=roll_back)
    assert store.stream_version("s") == 0
    store.append(batch_of("s", 0, "a"))
    assert store.stream_version("s") == 1


def test_stream_rows_are_never_left_as_placeholders(store: PostgresEventStore) -> None:
    store.append(batch_of("s", 0, "a"))
    with pytest.raises(WrongExpectedVersion):
        store.append(AppendBatch([StreamAppend("new", 0, [new_event("n")]), StreamAppend("s", 0, [])]))
    with store.connection() as conn:
        assert conn.execute("SELECT stream_id, version FROM streams ORDER BY stream_id").fetchall() == [
            ("s", 1)
        ]


def test_connection_is_autocommit_and_the_store_refuses_calls_once_closed(url: str) -> None:
    store = PostgresEventStore(url)
    assert store.url == url
    with store.connection() as conn:
        assert conn.autocommit
    store.close()
    with pytest.raises(StoreError), store.connection():
        pass
    with pytest.raises(StoreError):
        store.stream_version("s")


# -- the lease ------------------------------------------------------------------------------------------------------


def test_lease_is_exclusive_and_fails_over_when_the_holder_dies(url: str) -> None:
    name = f"scheduler-{time.time_ns()}"
    with ExitStack() as stack:
        first = stack.enter_context(AdvisoryLease(url, name))
        second = stack.enter_context(AdvisoryLease(url, name))
        other = stack.enter_context(AdvisoryLease(url, f"{name}-other"))
        assert first.try_acquire()
        assert first.try_acquire()  # idempotent for the holder
        assert first.held()
        assert not second.try_acquire()
        assert not second.held()
        assert other.try_acquire()  # another name is another lease

        with psycopg.connect(url, autocommit=True) as admin:
            pids = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"ledger-lease:{name}"[:63],)
            ).fetchall()
            holder = [pid for (pid,) in pids if _holds(admin, pid)]
            assert len(holder) == 1
            admin.execute("SELECT pg_terminate_backend(%s)", (holder[0],))
        deadline = time.monotonic() + 10
        while not second.try_acquire():
            assert time.monotonic() < deadline, "the lease did not fail over"
            time.sleep(0.05)
        assert second.held()
        assert not first.held()
        assert not first.try_acquire()

        second.release()
        assert not second.held()
        assert first.try_acquire()  # reconnects after losing its session
        first.close()
        assert second.try_acquire()
        with pytest.raises(StoreError):
            first.try_acquire()


def _holds(admin: psycopg.Connection[Any], pid: int) -> bool:
    row = admin.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s)", (pid,)
    ).fetchone()
    return bool(row and row[0])


def test_closing_the_holder_frees_the_lease(url: str) -> None:
    name = f"expiry-{time.time_ns()}"
    with AdvisoryLease(url, name) as second:
        with AdvisoryLease(url, name) as first:
            assert first.try_acquire()
            assert not second.try_acquire()
        assert second.try_acquire()


def _hold_lease(url: str, name: str, acquired: Any) -> None:
    """A replica that takes the lease and then hangs until it is killed."""
    lease = AdvisoryLease(url, name)
    acquired.put(lease.try_acquire())
    time.sleep(120)


def test_lease_fails_over_when_the_holder_process_is_killed(url: str) -> None:
    name = f"killed-{time.time_ns()}"
    context = multiprocessing.get_context("spawn")
    acquired = context.Queue()
    holder = context.Process(target=_hold_lease, args=(url, name, acquired), daemon=True)
    holder.start()
    try:
        assert acquired.get(timeout=60) is True
        with AdvisoryLease(url, name) as standby:
            assert not standby.try_acquire()
            holder.kill()
            holder.join(10)
            deadline = time.monotonic() + 10
            while not standby.try_acquire():
                assert time.monotonic() < deadline, "the lease did not fail over"
                time.sleep(0.05)
            assert standby.held()
    finally:
        if holder.is_alive():
            holder.kill()
            holder.join(10)


def test_find_commands_reads_many_keys_at_once(store: PostgresEventStore) -> None:
    store.append(AppendBatch([], [command("k1"), command("k2"), command("k1", program_id="p2")]))
    found = store.find_commands([("p1", "k1"), ("p1", "k3"), ("p2", "k1"), ("p1", "k1"), ("p2", "k2")])
    assert found == {
        ("p1", "k1"): command("k1"),
        ("p2", "k1"): command("k1", program_id="p2"),
    }
    assert store.find_commands([]) == {}
