"""The projections on a real SQLite event store file: written in the append's transaction, queried back,
rebuilt into fresh tables and verified against freshly folded state."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from ledger.domain import events as ev
from ledger.domain.state import MemberState
from ledger.store.port import AppendBatch, NewEvent, StoredEvent, StreamAppend
from ledger.store.sqlite import SqliteEventStore
from projections.rebuild import rebuild
from projections.rows import DueRow, HistoryRow, member_rows, parse_member_stream
from projections.sqlite_queries import InvalidPageToken, SqliteReadModels
from projections.sqlite_schema import TABLES
from projections.sqlite_writer import MemberUpdate, SqliteProjector
from projections.verify import ROW, Mismatch, compare
from tests.unit.projections.projection_timeline import (
    PROGRAM,
    SHANGHAI,
    absorbed,
    activated,
    awarded,
    enrolled,
    fold_stored,
    member_one,
    merged,
    new_event,
    purchase,
    sh,
    simple_due_at,
    stream,
)


class Ledger:
    """A minimal write path: append a batch and project it in the same transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SqliteEventStore(path, synchronous="OFF")
        self.projector = SqliteProjector()
        self.projector.create_schema_at(path)
        self.reads = SqliteReadModels(self.store.read_connection)
        self.states: dict[str, MemberState] = {}
        self.counter = 0
        self.fail_in_transaction = False

    def append(
        self, batch: dict[str, list[ev.MemberEvent]], *, program_event: bool = False
    ) -> list[StoredEvent]:
        appends: list[StreamAppend] = []
        for member_id, events in batch.items():
            news: list[NewEvent] = []
            for event in events:
                self.counter += 1
                news.append(new_event(event, f"ev-{self.counter}", key=f"cmd-{self.counter}"))
            sid = stream(member_id)
            appends.append(StreamAppend(sid, self.store.stream_version(sid), news))
        if program_event:
            self.counter += 1
            other = NewEvent(
                f"ev-{self.counter}",
                "ClockAdvanced",
                1,
                sh(2026, 3, 1),
                sh(2026, 3, 1),
                None,
                None,
                None,
                None,
                {},
                b"{}",
            )
            appends.append(StreamAppend(f"program-{PROGRAM}", -1, [other]))
        return self.store.append(AppendBatch(appends), in_transaction=self._project)

    def _project(self, conn: sqlite3.Connection, stored: list[StoredEvent]) -> None:
        by_stream: dict[str, list[StoredEvent]] = {}
        for s in stored:
            if s.stream_id.startswith("member-"):
                by_stream.setdefault(s.stream_id, []).append(s)
        updates: list[MemberUpdate] = []
        for sid, events in by_stream.items():
            state, history = fold_stored(self.states.get(sid), events)
            self.states[sid] = state
            identities = [
                i
                for e in map(lambda s: ev.decode(s.payload), events)
                if isinstance(e, ev.MemberEnrolled | ev.MemberAbsorbed)
                for i in e.identities
            ]
            updates.append(
                MemberUpdate(
                    state.program_id, state.member_id, state, history, simple_due_at(state), identities
                )
            )
        self.projector.apply(conn, updates)
        if self.fail_in_transaction:
            raise RuntimeError("boom")

    def state(self, member_id: str) -> MemberState:
        return self.states[stream(member_id)]

    def writer_connection(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=10)


def scenario(ledger: Ledger) -> None:
    one = member_one()
    ledger.append(
        {
            "m1": one[:6],
            "m2": [
                enrolled(sh(2026, 3, 1, 11), "m2", ["idh-m2"]),
                purchase(sh(2026, 3, 5), "O10", 100, active_at=sh(2026, 3, 20)),
            ],
            "m3": [enrolled(sh(2026, 3, 1, 12), "m3", ["idh-m3"]), awarded(sh(2026, 3, 2), "B-1", 25)],
        },
        program_event=True,
    )
    ledger.append({"m1": one[6:], "m2": [activated(sh(2026, 3, 20), "P-O10", 100)]})
    ledger.append(
        {
            "m3": [merged(sh(2026, 6, 1), "m2", 25)],
            "m2": [absorbed(sh(2026, 6, 1), "m3", [("B-1", 25, sh(2026, 3, 2))], ["idh-m3"])],
        }
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.db")
    scenario(led)
    yield led
    led.store.close()


def dump(conn: sqlite3.Connection, prefix: str = "") -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in TABLES:
        out[table] = sorted(conn.execute(f"SELECT * FROM {prefix}{table}").fetchall(), key=repr)
    return out


def refold(ledger: Ledger, member_id: str) -> tuple[MemberState, list[HistoryRow]]:
    return fold_stored(None, ledger.store.read_stream(stream(member_id)))


def last_position(ledger: Ledger) -> int:
    return max(e.position for e in ledger.store.read_all(0, 10_000))


# -- written with the append, read back ----------------------------------------------------------------------------


def test_rows_are_written_with_the_append_and_read_back(ledger: Ledger):
    reads = ledger.reads
    m1 = member_rows(ledger.state("m1"))
    assert reads.balance(PROGRAM, "m1") == m1.balance
    assert reads.balance(PROGRAM, "m1") is not None and reads.balance(PROGRAM, "m1").active == 90  # type: ignore[union-attr]
    assert reads.tier(PROGRAM, "m1") == m1.tier
    assert reads.entitlements(PROGRAM, "m1") == list(m1.entitlements)
    assert reads.memberships(PROGRAM, "m1") == list(m1.memberships)
    assert reads.balance(PROGRAM, "nobody") is None and reads.tier(PROGRAM, "nobody") is None
    assert reads.member_ids(PROGRAM) == ["m1", "m2", "m3"]
    assert reads.checkpoint() == last_position(ledger)
    assert reads.checkpoint("other") == 0


def test_lot_pages(ledger: Ledger):
    reads = ledger.reads
    open_lots, token = reads.lots(PROGRAM, "m1", include_closed=False, page_size=10)
    assert [(r.lot_id, r.status) for r in open_lots] == [("P-O1", "active"), ("P-O4", "pending")]
    assert token == ""
    page1, token = reads.lots(PROGRAM, "m1", include_closed=True, page_size=3)
    assert token
    page2, token2 = reads.lots(PROGRAM, "m1", include_closed=True, page_size=3, page_token=token)
    assert token2 == ""
    assert page1 + page2 == list(member_rows(ledger.state("m1")).lots)
    with pytest.raises(InvalidPageToken):
        reads.lots(PROGRAM, "m1", include_closed=True, page_size=3, page_token="not-a-token")


def test_history_pages_newest_first(ledger: Ledger):
    reads = ledger.reads
    seen: list[HistoryRow] = []
    token = ""
    while True:
        page, token = reads.history(PROGRAM, "m1", page_size=4, page_token=token)
        seen += page
        if not token:
            break
    assert [h.version for h in seen] == list(range(15, 0, -1))
    _, expected = refold(ledger, "m1")
    assert seen == expected[::-1]
    assert seen[0].summary == "temporary upgrade to gold until 2026-06-01 by op1: spring campaign"
    _, lot_token = reads.lots(PROGRAM, "m1", include_closed=True, page_size=1)
    with pytest.raises(InvalidPageToken):
        reads.history(PROGRAM, "m1", page_size=4, page_token=lot_token)


def test_identities_due_expiring_and_liability(ledger: Ledger):
    reads = ledger.reads
    assert reads.lookup_identity(PROGRAM, "idh-m1-phone") == "m1"
    assert reads.lookup_identity(PROGRAM, "idh-m3") == "m2"  # moved by the merge
    assert reads.lookup_identity(PROGRAM, "nope") is None
    assert reads.lookup_identity("other_program", "idh-m1-phone") is None
    # m1's next due moment is the activation of P-O4 (2026-05-17); m2 and m3 have nothing before 2027.
    assert reads.due_members(PROGRAM, sh(2026, 5, 17), 10) == ["m1"]
    assert reads.due_members(PROGRAM, sh(2026, 5, 16), 10) == []
    assert reads.due_members(PROGRAM, sh(2027, 4, 1), 10) == ["m1", "m2"]  # m3 was merged away: nothing due
    assert reads.due_members(PROGRAM, sh(2027, 4, 1), 1) == ["m1"]
    assert reads.expiring_between(PROGRAM, "m1", sh(2027, 3, 1), sh(2027, 4, 2)) == 97
    assert reads.expiring_between(PROGRAM, "m1", sh(2026, 4, 1), sh(2026, 5, 2)) == 0  # P-O3 already expired
    liability = reads.liability(PROGRAM, sh(2026, 6, 2), SHANGHAI)
    # m1: 90 active + 7 pending, m2: 100 + 25 absorbed; all expire at the start of April 2027 (March's points)
    assert liability["by_month"] == {"2027-03": 222}
    assert (liability["active"], liability["pending"], liability["total"]) == (215, 7, 222)
    assert reads.liability(PROGRAM, sh(2027, 4, 1), SHANGHAI)["total"] == 0


def test_a_failed_append_writes_no_projection_rows(ledger: Ledger):
    before = dump(ledger.store.read_connection())
    ledger.fail_in_transaction = True
    with pytest.raises(RuntimeError):
        ledger.append({"m2": [awarded(sh(2026, 7, 1), "B-9", 5)]})
    assert dump(ledger.store.read_connection()) == before


def test_apply_writes_only_lots_that_changed_and_is_repeatable(ledger: Ledger):
    conn = ledger.writer_connection()
    state = ledger.state("m1")
    update = MemberUpdate(PROGRAM, "m1", state, (), simple_due_at(state), ())
    conn.execute("BEGIN IMMEDIATE")
    changes = conn.total_changes
    ledger.projector.apply(conn, [update])
    assert conn.total_changes - changes == 3  # balance, tier, due; none of the 4 unchanged lots
    state.lots["P-O4"].remaining = 6  # a state that differs in one lot, and lacks another
    gone = state.lots.pop("B-1")
    changes = conn.total_changes
    ledger.projector.apply(conn, [update])
    assert conn.total_changes - changes == 3 + 1 + 1
    lots = {r[0]: r[1] for r in conn.execute("SELECT lot_id, remaining FROM lot WHERE member_id = 'm1'")}
    assert lots == {"P-O1": 90, "P-O3": 0, "P-O4": 6}
    conn.execute("ROLLBACK")
    state.lots["P-O4"].remaining = 7
    state.lots["B-1"] = gone
    conn.close()


def test_apply_refuses_rows_of_another_member(ledger: Ledger):
    conn = ledger.writer_connection()
    state = ledger.state("m1")
    with pytest.raises(ValueError):
        ledger.projector.apply(conn, [MemberUpdate(PROGRAM, "m2", state)])
    conn.close()


# -- rebuild ---------------------------------------------------------------------------------------------------------


def test_rebuild_into_fresh_tables_equals_the_live_projection(ledger: Ledger):
    reader = ledger.store.read_connection()
    before = dump(reader)
    conn = ledger.writer_connection()
    conn.execute("DELETE FROM history WHERE member_id = 'm2'")  # damage that the rebuild must repair
    conn.execute("UPDATE balance SET active = 0")
    report = rebuild(ledger.store, conn, fold_stored, simple_due_at)
    conn.close()
    after = dump(reader)
    assert after == before
    assert report.members == 3
    assert report.events == 22 and report.other_events == 1  # m1: 15, m2: 4, m3: 3
    assert report.history_rows == 22 and report.caught_up == 0
    assert report.position == last_position(ledger)
    assert report.events_per_second > 0
    names = {r[0] for r in reader.execute("SELECT name FROM sqlite_master")}
    assert not {n for n in names if n.startswith("rb_")}
    assert {"history_by_member", "due_by_time", "identity_by_member"} <= names
    # the live path keeps working on the swapped-in tables
    ledger.append({"m2": [awarded(sh(2026, 7, 1), "B-9", 5)]})
    assert ledger.reads.balance(PROGRAM, "m2").active == 130  # type: ignore[union-attr]


def test_rebuild_twice_and_into_prefixed_tables(ledger: Ledger):
    conn = ledger.writer_connection()
    rebuild(ledger.store, conn, fold_stored, simple_due_at, page_size=4, flush_rows=3)
    rebuild(ledger.store, conn, fold_stored, simple_due_at, page_size=7, prefix="copy_")
    reader = ledger.store.read_connection()
    assert dump(reader, "copy_") == dump(reader)
    conn.close()


class _AppendsOnceWhileRebuilding:
    """A store whose log grows once, right after the rebuild first reaches its end."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.done = False

    def read_all(self, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        page = self.ledger.store.read_all(after_position, limit)
        if not page and not self.done:
            self.done = True
            self.ledger.append({"m1": [awarded(sh(2026, 7, 1), "B-late", 3, reference="late")]})
        return page


def test_rebuild_catches_up_with_events_appended_meanwhile(ledger: Ledger):
    conn = ledger.writer_connection()
    report = rebuild(cast(Any, _AppendsOnceWhileRebuilding(ledger)), conn, fold_stored, simple_due_at)
    conn.close()
    assert report.caught_up == 1
    assert report.position == last_position(ledger)
    assert ledger.reads.balance(PROGRAM, "m1").active == 93  # type: ignore[union-attr]
    assert (
        ledger.reads.history(PROGRAM, "m1", 1)[0][0].summary
        == "review (late): +3 points active until 2027-04-01"
    )
    state, history = refold(ledger, "m1")
    assert compare(member_rows(state), history, ledger.store.read_connection(), PROGRAM, "m1") == []


# -- verify ------------------------------------------------------------------------------------------------------------


def verify_all(ledger: Ledger) -> list[Mismatch]:
    found: list[Mismatch] = []
    for sid in ledger.store.list_streams("member-"):
        _, member_id = parse_member_stream(sid)
        state, history = refold(ledger, member_id)
        due = DueRow(PROGRAM, member_id, simple_due_at(state))
        found += compare(
            member_rows(state), history, ledger.store.read_connection(), PROGRAM, member_id, due=due
        )
    return found


def test_verify_finds_nothing_on_a_sound_projection(ledger: Ledger):
    assert verify_all(ledger) == []


def test_verify_names_a_tampered_balance_field(ledger: Ledger):
    conn = ledger.writer_connection()
    conn.execute(
        "UPDATE balance SET active = active + 5 WHERE program_id = ? AND member_id = 'm1'", (PROGRAM,)
    )
    conn.close()
    found = verify_all(ledger)
    assert found == [Mismatch("balance", (PROGRAM, "m1"), "active", 90, 95)]
    assert str(found[0]) == "balance[little_sprout/m1].active: expected 90, found 95"


def test_verify_finds_missing_extra_and_changed_rows(ledger: Ledger):
    conn = ledger.writer_connection()
    conn.execute("DELETE FROM lot WHERE member_id = 'm1' AND lot_id = 'P-O4'")
    conn.execute("UPDATE history SET summary = 'edited' WHERE member_id = 'm2' AND version = 2")
    conn.execute("UPDATE due SET due_at = NULL WHERE member_id = 'm1'")
    conn.execute("INSERT INTO identity VALUES (?, 'idh-stolen', 'm2')", (PROGRAM,))
    conn.execute("UPDATE identity SET member_id = 'm1' WHERE identity = 'idh-m3'")
    conn.execute(
        "INSERT INTO entitlement SELECT program_id, member_id, 'E-extra', benefit, name, kind, value_fen, valid_from,"
        " valid_until, quota_total, quota_per_month, used_total, source, revoked_at, revoked_reason FROM entitlement"
    )
    conn.close()
    found = {(m.table, m.key[-1], m.field) for m in verify_all(ledger)}
    assert found == {
        ("lot", "P-O4", ROW),
        ("history", 2, "summary"),
        ("due", "m1", "due_at"),
        ("identity", "idh-stolen", "member_id"),
        ("identity", "idh-m3", "member_id"),  # found under m1 (unexpected) and missing from m2
        ("entitlement", "E-extra", ROW),
    }
    missing = [m for m in verify_all(ledger) if m.table == "lot"]
    assert str(missing[0]) == "lot[little_sprout/m1/P-O4]: missing row"


def test_verify_rows_must_be_of_the_member(ledger: Ledger):
    state, history = refold(ledger, "m1")
    with pytest.raises(ValueError):
        compare(member_rows(state), history, ledger.store.read_connection(), PROGRAM, "m2")


def test_a_failed_rebuild_leaves_the_live_tables_alone(ledger: Ledger):
    reader = ledger.store.read_connection()
    before = dump(reader)

    def broken_fold(
        state: MemberState | None, events: Sequence[StoredEvent]
    ) -> tuple[MemberState, list[HistoryRow]]:
        if events[0].stream_id == stream("m2"):
            raise RuntimeError("cannot fold")
        return fold_stored(state, events)

    conn = ledger.writer_connection()
    with pytest.raises(RuntimeError):
        rebuild(ledger.store, conn, broken_fold, simple_due_at)
    conn.close()
    assert dump(reader) == before
    assert not [r for r in reader.execute("SELECT name FROM sqlite_master WHERE name LIKE 'rb%'")]
