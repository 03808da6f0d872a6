"""The projection runner on both read-model databases (SQLite and PostgreSQL, via the ``store_url`` fixture):
read models that lag the log are caught up when a backend starts, page by page, exactly once.

Lag is made two ways: a "crashed" app that appends through the real write path but whose projection hook does
nothing (its events commit, its read-model rows never do, as after a crash between commit and projection), and
tampering with the read models (checkpoint reset, rows deleted).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, Wired, build, history_fold, reference_document, sqlite_path, store_kind
from ledger.domain import commands as cmd
from ledger.domain.decide import next_due
from policies import OrderLine
from projections.runner import ProjectionRunner

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "p"


def _open(store_url: str) -> Wired:
    return build(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))


def _close(wired: Wired) -> None:
    wired.app.close()
    wired.backend.personal.close()
    wired.backend.store.close()


def _sql(store_url: str, *statements: str) -> None:
    if store_kind(store_url) == "sqlite":
        conn = sqlite3.connect(sqlite_path(store_url), isolation_level=None, timeout=30)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as pg:
        for statement in statements:
            pg.execute(statement)


def _purchase(app: LedgerApp, member: str, order: str, fen: int) -> None:
    line = OrderLine("l1", "SKU", "toys", 1, fen)
    app.execute(cmd.Envelope(PROGRAM, cmd.RecordPurchase(member, order, (line,), fen), f"buy-{member}-{order}"))


def _crashed_app(wired: Wired) -> LedgerApp:
    """An app on the same log whose projection hook writes nothing (events commit without read-model rows)."""
    reads = wired.backend.reads
    return LedgerApp(
        wired.backend.store,
        ManualClock(START),
        wired.backend.personal,
        project=lambda _tx, _stored, _changes: None,
        identity_owner=reads.lookup_identity,
        due_members=reads.due_members,
    )


@pytest.fixture
def seeded(store_url: str) -> Iterator[str]:
    """A store with program ``p`` and member alice (enrolled, one purchase), projected normally."""
    wired = _open(store_url)
    app = wired.app
    app.create_program(PROGRAM, "P", reference_document(), "test", START, "create")
    app.enroll(PROGRAM, "alice", [("card_number", "a-1")], None, "enroll-alice")
    _purchase(app, "alice", "O1", 12_345)
    _close(wired)
    yield store_url


def _assert_caught_up(wired: Wired, members: list[str]) -> None:
    app = wired.app
    reads: Any = wired.backend.reads
    for member in members:
        report = app.verify_member(PROGRAM, member)
        assert report.ok, (member, report.mismatches)
        state = app.view(PROGRAM, member).state
        balance: Any = reads.balance(PROGRAM, member)
        assert balance is not None and balance.version == state.version
        history = reads.history(PROGRAM, member, 100, "")
        assert len(history[0]) == state.version
    head = wired.backend.store.read_all(after_position=0, limit=100_000)[-1].position
    assert reads.checkpoint() == head


def test_startup_projects_events_a_crashed_process_appended(seeded: str) -> None:
    wired = _open(seeded)
    crashed = _crashed_app(wired)
    try:
        crashed.enroll(PROGRAM, "bob", [("card_number", "b-1")], None, "enroll-bob")
        _purchase(crashed, "bob", "O2", 5_000)
        _purchase(crashed, "alice", "O3", 7_000)
    finally:
        crashed.close()
    reads: Any = wired.backend.reads
    assert reads.balance(PROGRAM, "bob") is None  # the lag is real
    assert not wired.app.verify_member(PROGRAM, "alice").ok
    _close(wired)

    wired = _open(seeded)  # startup catches up
    try:
        _assert_caught_up(wired, ["alice", "bob"])
        assert wired.app.lookup(PROGRAM, "card_number", "b-1") == "bob"
        _purchase(wired.app, "bob", "O4", 1_000)  # and serving goes on from there
        _assert_caught_up(wired, ["alice", "bob"])
    finally:
        _close(wired)


def test_startup_repairs_a_reset_checkpoint_and_deleted_rows(seeded: str) -> None:
    _sql(
        seeded,
        "UPDATE projection_checkpoint SET position = 0",
        "DELETE FROM history WHERE member_id = 'alice' AND version > 1",
        "DELETE FROM lot",
        "DELETE FROM identity",
    )
    wired = _open(seeded)
    try:
        _assert_caught_up(wired, ["alice"])
        assert wired.app.lookup(PROGRAM, "card_number", "a-1") == "alice"
    finally:
        _close(wired)


def test_pages_are_exactly_once_and_a_failed_page_is_replayed(seeded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wired = _open(seeded)
    crashed = _crashed_app(wired)
    try:
        for i in range(4):
            crashed.enroll(PROGRAM, f"m{i}", [("card_number", f"m-{i}")], None, f"enroll-m{i}")
            _purchase(crashed, f"m{i}", f"O{i}", 1_000 + i)
            _purchase(crashed, "alice", f"A{i}", 2_000 + i)
    finally:
        crashed.close()
    app, backend = wired.app, wired.backend
    runner = ProjectionRunner(
        backend.store,
        backend.projector,
        backend.read_connection,
        due_at=lambda s: next_due(s, app.context_of(s)),
        fold=history_fold(app),
        page_size=3,
    )
    before = runner.position()
    original = backend.projector.apply
    calls = 0

    def failing_apply(conn: Any, updates: Any) -> None:
        nonlocal calls
        calls += 1
        original(conn, updates)  # the rows are written ... then the page fails before its commit
        if calls == 2:
            raise RuntimeError("crash mid-page")

    monkeypatch.setattr(backend.projector, "apply", failing_apply)
    try:
        assert runner.run_once() == 3
        first = runner.position()
        assert first > before
        with pytest.raises(RuntimeError):
            runner.run_once()
        assert runner.position() == first  # nothing of the failed page committed
        total = 3
        while n := runner.run_once():
            assert n <= 3
            total += n
    finally:
        monkeypatch.undo()
        runner.close()
    assert total == 12
    assert runner.run_once() == 0 and runner.catch_up() == 0
    _assert_caught_up(wired, ["alice", "m0", "m1", "m2", "m3"])
    _close(wired)


def test_an_up_to_date_start_writes_nothing(seeded: str) -> None:
    wired = _open(seeded)
    try:
        app, backend = wired.app, wired.backend
        runner = ProjectionRunner(
            backend.store,
            backend.projector,
            backend.read_connection,
            due_at=lambda s: next_due(s, app.context_of(s)),
            fold=history_fold(app),
        )
        assert not runner.lagging()
        assert runner.catch_up() == 0
        app.advance_clock(PROGRAM, START + timedelta(days=1))  # a program event: passed by the checkpoint
        runner.catch_up()
        assert not runner.lagging()
        runner.close()
        _assert_caught_up(wired, ["alice"])
    finally:
        _close(wired)
