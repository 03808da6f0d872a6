"""The SQLite store against the event-store contract, plus what only a file-backed store can show."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.adapters.sqlite.lease import FileLease
from ledger.adapters.sqlite.migrations import MIGRATIONS, migrate
from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.eventlog.chain import ChainBreak, verify_stream
from ledger.eventlog.port import (
    AppendBatch,
    CommandRecord,
    EventStore,
    StoredEvent,
    StoreError,
    StreamAppend,
    WrongExpectedVersion,
)
from ledger.testing.store_contract import (
    T0,
    EventStoreContract,
    assert_positions_are_dense_from_one,
    batch_of,
    command,
    new_event,
    read_everything,
)


class TestSqliteEventStore(EventStoreContract):
    def make_store(self, tmp_path: Path) -> EventStore[object]:
        return SqliteEventStore(str(tmp_path / "ledger.db"))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db")


@pytest.fixture
def store(path: str) -> Iterator[SqliteEventStore]:
    with SqliteEventStore(path) as store:
        yield store


def raw(path: str) -> sqlite3.Connection:
    """A connection that bypasses the store, as someone editing the file would."""
    return sqlite3.connect(path, isolation_level=None)


def five_events(store: SqliteEventStore) -> list[StoredEvent]:
    store.append(batch_of("s", 0, "e1", "e2"))
    store.append(batch_of("other", 0, "o1"))
    store.append(batch_of("s", 2, "e3", "e4", "e5"))
    return store.read_stream("s")


def check(store: SqliteEventStore, stream_id: str = "s") -> ChainBreak | None:
    return verify_stream(
        store.read_stream(stream_id),
        head_version=store.stream_version(stream_id),
        head_hash=store.stream_head_hash(stream_id),
    )


# -- durability and schema ------------------------------------------------------------------------------------


def test_appends_survive_close_and_reopen(path: str) -> None:
    with SqliteEventStore(path) as first:
        written = first.append(
            AppendBatch([StreamAppend("s", 0, [new_event("a"), new_event("b")])], [command("k")])
        )
        first.append(batch_of("t", 0, "c"))
        everything = read_everything(first)
    with SqliteEventStore(path) as second:
        assert read_everything(second) == everything
        assert second.read_stream("s") == written
        assert second.stream_version("s") == 2
        assert second.stream_head_hash("s") == written[-1].hash
        assert second.find_command("p1", "k") == command("k")
        assert second.list_streams("") == ["s", "t"]
        [next_event] = second.append(batch_of("s", 2, "d"))
        assert (next_event.version, next_event.position) == (3, everything[-1].position + 1)
        assert next_event.prev_hash == written[-1].hash
        assert check(second) is None


def test_file_is_in_wal_mode_with_full_synchronous_by_default(store: SqliteEventStore) -> None:
    assert store.read_connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    seen: list[int] = []

    def hook(conn: sqlite3.Connection, _events: list[StoredEvent]) -> None:
        seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])

    store.append(batch_of("s", 0, "a"), in_transaction=hook)
    assert seen == [2]  # FULL


def test_synchronous_is_configurable_and_checked(path: str) -> None:
    seen: list[int] = []

    def hook(conn: sqlite3.Connection, _events: list[StoredEvent]) -> None:
        seen.append(conn.execute("PRAGMA synchronous").fetchone()[0])

    with SqliteEventStore(path, synchronous="NORMAL") as store:
        store.append(batch_of("s", 0, "a"), in_transaction=hook)
    assert seen == [1]  # NORMAL
    with pytest.raises(ValueError, match="synchronous"):
        SqliteEventStore(path, synchronous="EXTRA")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="file path"):
        SqliteEventStore(":memory:")


def test_reopening_runs_no_migration_twice(path: str) -> None:
    SqliteEventStore(path).close()
    with raw(path) as conn:
        first = conn.execute("SELECT version, description, applied_at FROM schema_version").fetchall()
    assert [row[0] for row in first] == [m.version for m in MIGRATIONS]
    for _ in range(3):
        SqliteEventStore(path).close()
    conn = raw(path)
    try:
        assert conn.execute("SELECT version, description, applied_at FROM schema_version").fetchall() == first
        assert migrate(conn) == []
    finally:
        conn.close()


def test_a_database_from_newer_code_is_refused(path: str) -> None:
    SqliteEventStore(path).close()
    conn = raw(path)
    conn.execute("INSERT INTO schema_version VALUES (999, 'from the future', 0)")
    conn.close()
    with pytest.raises(StoreError, match="999"):
        SqliteEventStore(path)


# -- tampering through raw SQL ---------------------------------------------------------------------------------


def test_a_changed_payload_is_named(path: str, store: SqliteEventStore) -> None:
    events = five_events(store)
    conn = raw(path)
    conn.execute("UPDATE events SET payload = ? WHERE event_id = 'e3'", (b'{"points":999999}',))
    conn.close()
    broken = check(store)
    assert broken is not None
    assert (broken.version, broken.position) == (3, events[2].position)
    assert check(store, "other") is None


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE events SET type = 'PointsRedeemed' WHERE event_id = 'e4'",
        "UPDATE events SET occurred_at = occurred_at + 1 WHERE event_id = 'e4'",
        "UPDATE events SET policy_version = NULL WHERE event_id = 'e4'",
        "UPDATE events SET actor = '{}' WHERE event_id = 'e4'",
        "UPDATE events SET event_id = 'e4-bis' WHERE event_id = 'e4'",
    ],
)
def test_a_changed_envelope_field_is_named(path: str, store: SqliteEventStore, tamper: str) -> None:
    five_events(store)
    conn = raw(path)
    conn.execute(tamper)
    conn.close()
    broken = check(store)
    assert broken is not None
    assert broken.version == 4


def test_a_deleted_event_is_named(path: str, store: SqliteEventStore) -> None:
    events = five_events(store)
    conn = raw(path)
    conn.execute("DELETE FROM events WHERE event_id = 'e3'")
    conn.close()
    broken = check(store)
    assert broken is not None
    assert (broken.version, broken.position) == (3, events[3].position)


def test_a_deleted_last_event_is_named(path: str, store: SqliteEventStore) -> None:
    five_events(store)
    conn = raw(path)
    conn.execute("DELETE FROM events WHERE event_id = 'e5'")
    conn.close()
    broken = check(store)
    assert broken is not None
    assert (broken.version, broken.position) == (5, None)


def test_reordered_events_are_named(path: str, store: SqliteEventStore) -> None:
    five_events(store)
    conn = raw(path)
    conn.execute("UPDATE events SET version = -1 WHERE event_id = 'e2'")
    conn.execute("UPDATE events SET version = 2 WHERE event_id = 'e3'")
    conn.execute("UPDATE events SET version = 3 WHERE event_id = 'e2'")
    conn.close()
    broken = check(store)
    assert broken is not None
    assert broken.version == 2


def test_events_moved_in_the_global_order_are_named(path: str, store: SqliteEventStore) -> None:
    events = five_events(store)
    p2, p3 = events[1].position, events[2].position
    conn = raw(path)
    conn.execute("UPDATE events SET position = -1 WHERE position = ?", (p2,))
    conn.execute("UPDATE events SET position = ? WHERE position = ?", (p2, p3))
    conn.execute("UPDATE events SET position = ? WHERE position = -1", (p3,))
    conn.close()
    broken = check(store)
    assert broken is not None
    assert broken.version == 3
    assert "reordered" in broken.reason


# -- positions ------------------------------------------------------------------------------------------------


def test_positions_are_dense_from_one(store: SqliteEventStore) -> None:
    assert_positions_are_dense_from_one(store)


# -- the in-transaction hook and read connections -------------------------------------------------------------


def test_read_models_commit_and_roll_back_with_the_events(path: str, store: SqliteEventStore) -> None:
    conn = raw(path)
    conn.execute("CREATE TABLE balance (stream_id TEXT PRIMARY KEY, events INTEGER NOT NULL)")
    conn.close()

    def project(tx: sqlite3.Connection, events: list[StoredEvent]) -> None:
        tx.executemany(
            "INSERT INTO balance VALUES (?, 1) ON CONFLICT (stream_id) DO UPDATE SET events = events + 1",
            [(e.stream_id,) for e in events],
        )

    def project_then_fail(tx: sqlite3.Connection, events: list[StoredEvent]) -> None:
        project(tx, events)
        raise RuntimeError("read model refused")

    store.append(batch_of("s", 0, "a", "b"), in_transaction=project)
    with pytest.raises(RuntimeError):
        store.append(batch_of("s", 2, "c"), in_transaction=project_then_fail)
    reader = store.read_connection()
    assert reader.execute("SELECT stream_id, events FROM balance").fetchall() == [("s", 2)]
    assert store.stream_version("s") == 2


def test_a_hook_that_ends_the_transaction_is_an_error(store: SqliteEventStore) -> None:
    def roll_back(tx: sqlite3.Connection, _events: list[StoredEvent]) -> None:
        tx.execute("ROLLBACK")

    with pytest.raises(StoreError, match="hook"):
        store.append(batch_of("s", 0, "a"), in_transaction=roll_back)
    assert store.stream_version("s") == 0
    store.append(batch_of("s", 0, "a"))


def test_read_connections_are_per_thread_and_read_only(store: SqliteEventStore) -> None:
    mine = store.read_connection()
    assert store.read_connection() is mine
    theirs: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(store.read_connection()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        mine.execute("DELETE FROM events")


def test_closing_closes_the_read_connections(path: str) -> None:
    store = SqliteEventStore(path)
    reader = store.read_connection()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        reader.execute("SELECT 1")
    with pytest.raises(StoreError):
        store.read_connection()


def test_two_stores_on_one_file_serialize_their_appends(path: str, store: SqliteEventStore) -> None:
    with SqliteEventStore(path) as other:
        store.append(batch_of("s", 0, "a"))
        with pytest.raises(WrongExpectedVersion):
            other.append(batch_of("s", 0, "b"))
        [b] = other.append(batch_of("s", 1, "b"))
        [c] = store.append(batch_of("s", 2, "c"))
        assert (b.position, c.position) == (2, 3)
        assert c.prev_hash == b.hash
        assert check(store) is None


RACES = 20
ROUNDS = 150
SHARED = ("shared-0", "shared-1", "shared-2")


def _append_from_another_process(path: str, proc: int, start: object, results: object) -> None:
    """A second process on the file: races for new streams, then appends to shared streams, retrying on
    WrongExpectedVersion from the version it reads (as the write path does). Runs under multiprocessing spawn."""
    barrier: threading.Barrier = start  # type: ignore[assignment]  # a multiprocessing Barrier, same interface
    won: list[bool] = []
    conflicts = 0
    with SqliteEventStore(path) as store:
        for k in range(RACES):
            barrier.wait(timeout=60)
            try:
                store.append(batch_of(f"race-{k}", 0, f"race-{k}-p{proc}-a", f"race-{k}-p{proc}-b"))
                won.append(True)
            except WrongExpectedVersion:
                won.append(False)
        barrier.wait(timeout=60)
        for i in range(ROUNDS):
            stream_id = SHARED[i % len(SHARED)]
            tag = f"p{proc}-{i}"
            while True:
                version = store.stream_version(stream_id)
                batch = AppendBatch(
                    [
                        StreamAppend(stream_id, version, [new_event(f"{tag}-{j}", correlation_id=tag) for j in range(3)]),
                        StreamAppend(f"own-{proc}", i, [new_event(f"{tag}-own", correlation_id=tag)]),
                    ],
                    [CommandRecord("p1", tag, f"fp-{tag}", b"{}", T0, stream_id)],
                )
                try:
                    store.append(batch)
                    break
                except WrongExpectedVersion:
                    conflicts += 1
    results.put((proc, won, conflicts))  # type: ignore[attr-defined]


def test_two_processes_appending_to_shared_streams(path: str) -> None:
    """Appends from two processes serialize (the file lock, then BEGIN IMMEDIATE): positions stay dense, one
    append's events stay together, versions and hash chains stay whole, and the loser of a race gets
    WrongExpectedVersion (nothing of its batch written)."""
    SqliteEventStore(path).close()  # create the schema once, before both start
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [ctx.Process(target=_append_from_another_process, args=(path, n, start, results)) for n in range(2)]
    for p in procs:
        p.start()
    try:
        outcomes = dict((proc, (won, conflicts)) for proc, won, conflicts in (results.get(timeout=120) for _ in procs))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    for k in range(RACES):  # exactly one winner of each race; the loser was refused
        assert outcomes[0][0][k] != outcomes[1][0][k], f"race {k}: {outcomes[0][0][k]} and {outcomes[1][0][k]}"

    with SqliteEventStore(path) as store:
        everything = read_everything(store)
        assert [e.position for e in everything] == list(range(1, len(everything) + 1))
        assert len(everything) == RACES * 2 + 2 * ROUNDS * 4
        by_append: dict[str, list[int]] = {}
        for e in everything:
            if e.stream_id.startswith("race-"):
                assert e.event_id.startswith(e.stream_id + "-p")
                by_append.setdefault(e.stream_id, []).append(e.position)
            else:
                assert e.correlation_id is not None
                by_append.setdefault(e.correlation_id, []).append(e.position)
        for tag, positions in by_append.items():  # no interleaving: one append's events are consecutive
            assert positions == list(range(positions[0], positions[0] + len(positions))), tag
        for k in range(RACES):  # the winner's two events, none of the loser's
            assert len({e.event_id.rsplit("-", 1)[0] for e in store.read_stream(f"race-{k}")}) == 1
        for stream_id in (*SHARED, "own-0", "own-1"):
            events = store.read_stream(stream_id)
            assert [e.version for e in events] == list(range(1, len(events) + 1))
            assert check(store, stream_id) is None
        assert sum(len(store.read_stream(s)) for s in SHARED) == 2 * ROUNDS * 3
        assert len(store.find_commands([("p1", f"p{n}-{i}") for n in range(2) for i in range(ROUNDS)])) == 2 * ROUNDS


# -- the file lease -----------------------------------------------------------------------------------------------


def test_a_file_lease_is_held_by_one_holder_at_a_time(path: str) -> None:
    with FileLease(path, "scheduler") as first, FileLease(path, "scheduler") as second, FileLease(path, "feed") as other:
        assert first.try_acquire() and first.held() and first.try_acquire()
        assert not second.try_acquire() and not second.held()
        assert other.try_acquire()  # another name, another lease
        first.release()
        assert not first.held()
        assert second.try_acquire() and second.held()
        assert not first.try_acquire()
        second.close()
        assert first.try_acquire()
    with pytest.raises(StoreError, match="closed"):
        first.try_acquire()


def _hold_lease_then_die(path: str, ready: object) -> None:
    lease = FileLease(path, "scheduler")
    assert lease.try_acquire()
    ready.set()  # type: ignore[attr-defined]
    threading.Event().wait(60)  # killed by the test


def test_a_file_lease_is_freed_when_its_holder_dies(path: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lease_then_die, args=(path, ready))
    holder.start()
    try:
        assert ready.wait(60)
        with FileLease(path, "scheduler") as lease:
            assert not lease.try_acquire()
            holder.kill()
            holder.join(timeout=30)
            assert lease.try_acquire()
    finally:
        if holder.is_alive():
            holder.kill()


# -- speed --------------------------------------------------------------------------------------------------------


def group_commit(round_: int, members: int = 100) -> AppendBatch:
    """What the write path appends for ``members`` commands of two events each."""
    appends = []
    commands = []
    for m in range(members):
        stream_id = f"member-p1-m{m}"
        tag = f"r{round_}-m{m}"
        events = [
            new_event(f"{tag}-earned", correlation_id=tag),
            new_event(f"{tag}-tier", correlation_id=tag),
        ]
        appends.append(StreamAppend(stream_id, 2 * round_, events))
        commands.append(CommandRecord("p1", tag, f"fp-{tag}", b'{"ok":true}', T0, stream_id))
    return AppendBatch(appends, commands)
