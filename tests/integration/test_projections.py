"""The projections on SQLite and PostgreSQL, held to the same behaviours: written in the append's
transaction, queried back, rebuilt into fresh tables and switched over, verified against freshly folded state.

Every test runs on both backends (see :mod:`tests.integration.projection_backends`), so the two stay
interchangeable; the PostgreSQL runs use the PostgreSQL event store and a fresh schema per test, and are
skipped when no server answers (a failure instead when ``CI`` is set).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from ledger.adapters.postgres.projector import PgProjector
from ledger.adapters.postgres.read_models import PgReadModels, PgRows
from ledger.adapters.postgres.read_schema import create_tables, drop_tables, swap_tables, table_exists
from ledger.adapters.sqlite.read_models import InvalidPageToken
from ledger.domain import events as ev
from ledger.domain.state import MemberState
from ledger.domain.streams import parse_member_stream
from ledger.eventlog.port import StoredEvent
from ledger.testing.postgres import fresh_schema, require_postgres
from projections.rows import DueRow, HistoryRow, member_rows
from projections.standing import standing_row, standing_state
from projections.tables import RETIRED_TABLES, TABLES
from projections.update import MemberUpdate
from projections.verify import ROW, Mismatch, compare
from tests.integration.projection_backends import (
    BACKENDS,
    Ledger,
    PgLedger,
    SqliteLedger,
    scenario,
)
from tests.unit.projections.projection_timeline import (
    PROGRAM,
    SHANGHAI,
    awarded,
    enrolled,
    fold_stored,
    sh,
    simple_due_at,
    stream,
)

P = f"'{PROGRAM}'"


def _params() -> list[Any]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = require_postgres()
    with fresh_schema(base) as url:
        yield url


def _open(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    if backend == "sqlite":
        return SqliteLedger(tmp_path / "ledger.db")
    return PgLedger(request.getfixturevalue("pg_url"))


@pytest.fixture(params=_params())
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    led = _open(request.param, request, tmp_path)
    yield led
    led.close()


@pytest.fixture
def ledger(empty: Ledger) -> Ledger:
    scenario(empty)
    return empty


def refold(ledger: Ledger, member_id: str) -> tuple[MemberState, list[HistoryRow]]:
    return fold_stored(None, ledger.store.read_stream(stream(member_id)))


def last_position(ledger: Ledger) -> int:
    return max(e.position for e in ledger.store.read_all(0, 10_000))


assert set(BACKENDS) == {p.values[0] for p in _params()}


# -- written with the append, read back ----------------------------------------------------------------------------


def test_rows_are_written_with_the_append_and_read_back(ledger: Ledger):
    reads = ledger.reads
    m1 = member_rows(ledger.state("m1"))
    assert reads.balance(PROGRAM, "m1") == m1.balance
    assert reads.balance(PROGRAM, "m1") is not None and reads.balance(PROGRAM, "m1").active == 90  # type: ignore[union-attr]
    assert reads.tier(PROGRAM, "m1") == m1.tier
    standing = reads.standing_now(PROGRAM, "m1")
    assert standing is not None and standing.row == m1.standing  # the entitlements and memberships are in it
    facts, state = standing_state(standing.row), ledger.state("m1")
    assert [(e.entitlement_id, e.used_total) for e in facts.entitlements.values()] == [
        (e.entitlement_id, e.used_total) for e in state.entitlements.values()
    ]
    assert facts.memberships == state.memberships
    assert reads.balance(PROGRAM, "nobody") is None and reads.tier(PROGRAM, "nobody") is None
    assert reads.member_ids(PROGRAM) == ["m1", "m2", "m3"]
    assert reads.checkpoint() == last_position(ledger)
    assert reads.checkpoint("other") == 0


def test_the_standing_row_is_written_with_the_append_and_read_back(ledger: Ledger):
    for member_id in ("m1", "m2", "m3"):
        state = ledger.state(member_id)
        found = ledger.reads.standing_now(PROGRAM, member_id)
        assert found is not None and found.row == member_rows(state).standing
        assert found.due_at == ledger.reads.balance_now(PROGRAM, member_id, sh(2026, 6, 1)).due_at  # type: ignore[union-attr]
        assert standing_row(standing_state(found.row)) == found.row  # the facts survive the round trip
        both = ledger.reads.member_now(PROGRAM, member_id, sh(2026, 6, 1))
        assert both is not None and both.standing == found.row
        assert both.balance == ledger.reads.balance_now(PROGRAM, member_id, sh(2026, 6, 1))
    assert ledger.reads.standing_now(PROGRAM, "nobody") is None
    assert ledger.reads.member_now(PROGRAM, "nobody", sh(2026, 6, 1)) is None


def test_members_whose_standing_row_predates_the_table_have_none_until_a_rebuild(ledger: Ledger):
    before = ledger.dump()
    ledger.execute("DROP TABLE standing")  # a store made before the table
    again: Ledger
    if isinstance(ledger, SqliteLedger):
        again = SqliteLedger(ledger.path)  # opening it creates the missing table, empty
    else:
        assert isinstance(ledger, PgLedger)
        again = PgLedger(ledger.url)
    try:
        assert again.reads.standing_now(PROGRAM, "m1") is None
        both = again.reads.member_now(PROGRAM, "m1", sh(2026, 6, 1))
        assert both is not None and both.standing is None  # the balance is there, the standing is not
        again.rebuild()
        assert again.dump() == before
    finally:
        again.close()


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
    assert reads.due_members(PROGRAM, sh(2026, 5, 17), 10) == ["m1"]
    assert reads.due_members(PROGRAM, sh(2026, 5, 16), 10) == []
    assert reads.due_members(PROGRAM, sh(2027, 4, 1), 10) == ["m1", "m2"]
    assert reads.due_members(PROGRAM, sh(2027, 4, 1), 1) == ["m1"]
    assert reads.expiring_between(PROGRAM, "m1", sh(2027, 3, 1), sh(2027, 4, 2)) == 97
    assert reads.expiring_between(PROGRAM, "m1", sh(2026, 4, 1), sh(2026, 5, 2)) == 0
    liability = reads.liability(PROGRAM, sh(2026, 6, 2), SHANGHAI)
    assert liability["by_month"] == {"2027-03": 222}
    assert (liability["active"], liability["pending"], liability["total"]) == (215, 7, 222)
    assert reads.liability(PROGRAM, sh(2027, 4, 1), SHANGHAI)["total"] == 0


def test_a_failed_append_writes_no_projection_rows(ledger: Ledger):
    before = ledger.dump()
    ledger.fail_in_transaction = True
    with pytest.raises(RuntimeError):
        ledger.append({"m2": [awarded(sh(2026, 7, 1), "B-9", 5)]})
    assert ledger.dump() == before


def test_apply_writes_only_lots_that_changed_and_is_repeatable(ledger: Ledger):
    state = ledger.state("m1")
    update = MemberUpdate(PROGRAM, "m1", state, (), simple_due_at(state), ())

    def work(apply: Any) -> None:
        assert apply([update]) == 4  # balance, tier, standing, due; none of the 4 unchanged lots
        state.lots["P-O4"].remaining = 6  # a state that differs in one lot, and lacks another
        gone = state.lots.pop("B-1")
        try:
            assert apply([update]) == 4 + 1 + 1
        finally:
            state.lots["P-O4"].remaining = 7
            state.lots["B-1"] = gone

    ledger.apply_in_rolled_back_transaction(work)
    assert ledger.reads.balance(PROGRAM, "m1") == member_rows(state).balance
    lots = {r[0]: r[1] for r in ledger.rows("SELECT lot_id, remaining FROM lot WHERE member_id = 'm1'")}
    assert lots == {"B-1": 0, "P-O1": 90, "P-O3": 0, "P-O4": 7}  # rolled back


def test_applying_the_same_updates_twice_is_harmless_and_the_checkpoint_never_moves_back(ledger: Ledger):
    before = ledger.dump()
    state, history = refold(ledger, "m1")
    update = MemberUpdate(PROGRAM, "m1", state, history[:3], simple_due_at(state), ["idh-m1-phone"])

    def work(apply: Any) -> None:
        apply([update, update])
        apply([update])

    ledger.apply_in_rolled_back_transaction(work)
    assert ledger.dump() == before
    with ledger.writer() as conn:
        if ledger.name == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            ledger.projector.apply(conn, [update])
            conn.execute("COMMIT")
        else:
            with conn.transaction():
                ledger.projector.apply(conn, [update])
    assert ledger.dump() == before  # same rows, checkpoint not moved back to the third event
    assert ledger.reads.checkpoint() == last_position(ledger)


def test_apply_refuses_rows_of_another_member(ledger: Ledger):
    state = ledger.state("m1")
    with ledger.writer() as conn, pytest.raises(ValueError):
        ledger.projector.apply(conn, [MemberUpdate(PROGRAM, "m2", state)])


# -- rebuild ---------------------------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param({}, id="in-process"),
        pytest.param({"workers": 2}, id="2-workers"),
        pytest.param(
            {"workers": 2, "cache_members": 1, "page_size": 2, "flush_rows": 1}, id="2-workers-evicting"
        ),
    ]
)
def how(request: pytest.FixtureRequest) -> dict[str, Any]:
    """How the rebuild folds: in this process, or in worker processes (with a cache of one member each and small
    pages, so that members are evicted, written and read again from their streams: m1 and m2 share a worker)."""
    return dict(request.param)


def test_rebuild_into_fresh_tables_equals_the_live_projection(ledger: Ledger, how: dict[str, Any]):
    before = ledger.dump()
    ledger.execute("DELETE FROM history WHERE member_id = 'm2'")  # damage that the rebuild must repair
    ledger.execute("UPDATE balance SET active = 0")
    report = ledger.rebuild(**how)
    assert ledger.dump() == before
    assert report.members == 3
    assert report.events == 22 and report.other_events == 1
    assert report.history_rows == 22 and report.caught_up == 0
    assert report.position == last_position(ledger)
    assert report.events_per_second > 0
    assert report.workers == how.get("workers", 0)
    assert (report.reloaded > 0) == ("cache_members" in how)
    names = ledger.object_names()
    assert not {n for n in names if n.startswith("rb_")}
    assert {"history_by_member", "due_by_time", "identity_by_member"} <= names
    # the live path keeps working on the swapped-in tables
    ledger.append({"m2": [awarded(sh(2026, 7, 1), "B-9", 5)]})
    assert ledger.reads.balance(PROGRAM, "m2").active == 130  # type: ignore[union-attr]


def test_rebuild_twice_and_into_prefixed_tables(ledger: Ledger, how: dict[str, Any]):
    ledger.rebuild(**{**how, "page_size": 4, "flush_rows": 3})
    ledger.rebuild(**{**how, "page_size": 7, "prefix": "copy_"})
    assert ledger.dump("copy_") == ledger.dump()
    # the constraint and index names freed by the first swap are free again
    ledger.rebuild(**{**how, "page_size": 5})
    assert ledger.dump("copy_") == ledger.dump()


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


def test_rebuild_catches_up_with_events_appended_meanwhile(ledger: Ledger, how: dict[str, Any]):
    report = ledger.rebuild(cast(Any, _AppendsOnceWhileRebuilding(ledger)), **how)
    assert report.caught_up == 1
    assert report.position == last_position(ledger)
    assert ledger.reads.balance(PROGRAM, "m1").active == 93  # type: ignore[union-attr]
    assert (
        ledger.reads.history(PROGRAM, "m1", 1)[0][0].summary
        == "review (late): +3 points active until 2027-04-01"
    )
    state, history = refold(ledger, "m1")
    assert compare(member_rows(state), history, ledger.reader(), PROGRAM, "m1") == []


def test_a_member_erased_after_its_rows_were_written_keeps_no_identity_row(
    ledger: Ledger, how: dict[str, Any]
):
    assert [row[2] for row in ledger.dump()["identity"]].count("m2") == 2  # its own and m3's (the merge)
    erasure = ev.MemberErased(
        at=sh(2026, 7, 2), reason="request", request_reference="DSR-1", identities_removed=2
    )
    ledger.append({"m2": [erasure]})
    assert "m2" not in [row[2] for row in ledger.dump()["identity"]]
    before = ledger.dump()
    report = ledger.rebuild(**how)
    assert ledger.dump() == before
    assert (report.reloaded > 0) == ("cache_members" in how)  # m2 was written, evicted, then read again


def test_a_failed_rebuild_leaves_the_live_tables_alone(ledger: Ledger, how: dict[str, Any]):
    before = ledger.dump()

    def broken_fold(
        state: MemberState | None, events: Sequence[StoredEvent]
    ) -> tuple[MemberState, list[HistoryRow]]:
        if events[0].stream_id == stream("m2"):
            raise RuntimeError("cannot fold")
        return fold_stored(state, events)

    with pytest.raises(RuntimeError):
        ledger.rebuild(fold=broken_fold, **how)
    assert ledger.dump() == before
    assert not {n for n in ledger.object_names() if n.startswith("rb")}


# -- verify ------------------------------------------------------------------------------------------------------------


def verify_all(ledger: Ledger) -> list[Mismatch]:
    found: list[Mismatch] = []
    for sid in ledger.store.list_streams("member-"):
        _, member_id = parse_member_stream(sid)
        state, history = refold(ledger, member_id)
        due = DueRow(PROGRAM, member_id, simple_due_at(state))
        found += compare(member_rows(state), history, ledger.reader(), PROGRAM, member_id, due=due)
    return found


def test_verify_finds_nothing_on_a_sound_projection(ledger: Ledger):
    assert verify_all(ledger) == []


def test_verify_names_a_tampered_balance_field(ledger: Ledger):
    ledger.execute(f"UPDATE balance SET active = active + 5 WHERE program_id = {P} AND member_id = 'm1'")
    found = verify_all(ledger)
    assert found == [Mismatch("balance", (PROGRAM, "m1"), "active", 90, 95)]
    assert str(found[0]) == "balance[little_sprout/m1].active: expected 90, found 95"


def test_verify_names_a_tampered_standing_row(ledger: Ledger):
    ledger.execute(f"UPDATE standing SET version = version + 1 WHERE program_id = {P} AND member_id = 'm2'")
    version = ledger.state("m2").version
    assert verify_all(ledger) == [Mismatch("standing", (PROGRAM, "m2"), "version", version, version + 1)]
    ledger.execute(f"DELETE FROM standing WHERE program_id = {P} AND member_id = 'm2'")
    [missing] = verify_all(ledger)
    assert (missing.table, missing.key, missing.actual) == ("standing", (PROGRAM, "m2"), None)


def test_verify_finds_missing_extra_and_changed_rows(ledger: Ledger):
    ledger.execute("DELETE FROM lot WHERE member_id = 'm1' AND lot_id = 'P-O4'")
    ledger.execute("UPDATE history SET summary = 'edited' WHERE member_id = 'm2' AND version = 2")
    ledger.execute("UPDATE due SET due_at = NULL WHERE member_id = 'm1'")
    ledger.execute(f"INSERT INTO identity VALUES ({P}, 'idh-stolen', 'm2')")
    ledger.execute("UPDATE identity SET member_id = 'm1' WHERE identity = 'idh-m3'")
    ledger.execute("UPDATE tier_state SET tier = 'diamond' WHERE member_id = 'm2'")
    ledger.execute(
        "INSERT INTO lot SELECT program_id, member_id, 'L-extra', source, amount, remaining, held, occurred_at,"
        " active_at, expires_at, order_id, status, seq FROM lot WHERE member_id = 'm1' AND lot_id <> 'P-O4'"
        " ORDER BY lot_id LIMIT 1"
    )
    found = {(m.table, m.key[-1], m.field) for m in verify_all(ledger)}
    assert found == {
        ("lot", "P-O4", ROW),
        ("history", 2, "summary"),
        ("due", "m1", "due_at"),
        ("identity", "idh-stolen", "member_id"),
        ("identity", "idh-m3", "member_id"),
        ("tier_state", "m2", "tier"),
        ("lot", "L-extra", ROW),
    }
    missing = [m for m in verify_all(ledger) if m.table == "lot"]
    assert str(missing[0]) == "lot[little_sprout/m1/P-O4]: missing row"


def test_verify_rows_must_be_of_the_member(ledger: Ledger):
    state, history = refold(ledger, "m1")
    with pytest.raises(ValueError):
        compare(member_rows(state), history, ledger.reader(), PROGRAM, "m2")


# -- PostgreSQL only -----------------------------------------------------------------------------------------------


@pytest.fixture
def pg_ledger(pg_url: str) -> Iterator[PgLedger]:
    led = PgLedger(pg_url)
    scenario(led)
    yield led
    led.close()


@pytest.mark.postgres
def test_both_backends_store_exactly_the_same_rows(pg_ledger: PgLedger, tmp_path: Path):
    lite = SqliteLedger(tmp_path / "twin.db")
    try:
        scenario(lite)
        assert pg_ledger.dump() == lite.dump()
    finally:
        lite.close()


@pytest.mark.postgres
def test_verify_reads_through_any_stored_rows_reader(pg_ledger: PgLedger):
    state, history = refold(pg_ledger, "m1")
    with psycopg.connect(pg_ledger.url, autocommit=True) as conn:
        assert compare(member_rows(state), history, PgRows(conn), PROGRAM, "m1") == []
        assert compare(member_rows(state), history, conn, PROGRAM, "m1", placeholder="%s") == []


@pytest.mark.postgres
def test_schema_creation_is_idempotent_and_prefixed_tables_swap_with_their_names(pg_url: str):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        PgProjector().create_schema(conn)
        PgProjector().create_schema(conn)
        with conn.transaction():
            create_tables(conn, "rb_")
            swap_tables(conn, "rb_", "")
        with conn.transaction():
            create_tables(conn, "rb_")  # no clash with the constraint and index names of the swapped tables
            drop_tables(conn, "rb_")
        names = {
            r[0]
            for r in conn.execute(
                "SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
            )
        }
        assert "balance_pkey" in names and not {n for n in names if n.startswith("rb_")}
        with pytest.raises(RuntimeError):
            swap_tables(conn, "rb_", "")  # not in a transaction


def test_opening_drops_the_tables_earlier_releases_kept_and_nothing_reads(pg_url: str):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in RETIRED_TABLES:  # as an earlier release left them, rows and all
            conn.execute(f"CREATE TABLE {name} (program_id TEXT, member_id TEXT)")
            conn.execute(f"INSERT INTO {name} VALUES ('p', 'm1')")
            conn.execute(f"CREATE TABLE rb_{name} (program_id TEXT)")  # a rebuild's leftover
        PgProjector().create_schema(conn)
        assert not [n for n in RETIRED_TABLES if table_exists(conn, n)]
        assert all(table_exists(conn, n) for n in TABLES)
        drop_tables(conn, "rb_")
        assert not [n for n in RETIRED_TABLES if table_exists(conn, f"rb_{n}")]


@pytest.mark.postgres
def test_concurrent_appends_for_different_members_from_several_writers(pg_url: str):
    """Replicas appending at once for different members: every row and the checkpoint come out right."""
    ledgers = [PgLedger(pg_url) for _ in range(4)]
    for n, led in enumerate(ledgers):
        led.counter = n * 1000  # event ids and command keys of their own
    try:
        errors: list[BaseException] = []

        def run(n: int, led: PgLedger) -> None:
            try:
                for i in range(10):
                    member = f"w{n}-{i}"
                    led.append({member: [enrolled(sh(2026, 3, 1, 10), member, [f"idh-{member}"])]})
                    led.append({member: [awarded(sh(2026, 3, 2), f"B-{i}", i + 1)]})
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(n, led)) for n, led in enumerate(ledgers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        reads = PgReadModels(ledgers[0].pg_store.connection)
        assert len(reads.member_ids(PROGRAM)) == 40
        assert reads.checkpoint() == last_position(ledgers[0])
        for n, led in enumerate(ledgers):
            for i in range(10):
                member = f"w{n}-{i}"
                state, history = refold(led, member)
                assert compare(member_rows(state), history, led.reader(), PROGRAM, member) == []
    finally:
        for led in ledgers:
            led.close()
