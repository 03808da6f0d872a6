"""Serving on KurrentDB: the event log in KurrentDB, read models in SQLite or PostgreSQL, projected after each
commit in a read-model transaction of their own, and caught up by the projection runner.

IMPORTANT: the ``*_on_stand_in`` tests do NOT talk to KurrentDB. They inject
:class:`ledger.adapters.kurrentdb.fake.FakeKurrentDB`, an in-memory stand-in for the ``KurrentDBClient``
methods the store calls, so they check the ledger's side (the write path without an in-transaction hook,
projection after commit, catch-up, queries, verification), not KurrentDB's behaviour. The same flow against a
real server is :func:`test_serving_on_a_real_server`, which runs only when ``KURRENTDB_URI`` names one (see
``tests/contract/test_kurrentdb_store.py`` for how to start it) and is skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.adapters.kurrentdb.factory import kurrentdb_backend
from ledger.adapters.kurrentdb.fake import FakeKurrentDB
from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "p"
KURRENTDB_URI = os.environ.get("KURRENTDB_URI")
SETTINGS = Settings(store_url="kurrentdb://stand-in:2113?Tls=false", reference_program=False)


@pytest.fixture(params=("sqlite", "postgresql"))
def read_models(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'read-models.db'}"
        return
    from ledger.testing.postgres import fresh_schema, require_postgres

    with fresh_schema(require_postgres()) as url:
        yield url


def _open(client: Any, read_models: str, settings: Settings = SETTINGS, namespace: str = "") -> Wired:
    backend = kurrentdb_backend(settings, client=client, read_models=read_models, namespace=namespace)
    return build(settings, clock=ManualClock(START), backend=backend)


def _close(wired: Wired) -> None:
    wired.app.close()
    wired.backend.personal.close()
    wired.backend.store.close()


def _run(app: Any, command: cmd.MemberCommand, key: str) -> Any:
    return app.execute(cmd.Envelope(PROGRAM, command, key))


def _scenario(wired: Wired) -> None:
    """enroll, purchase, activate, hold, commit, refund - through the app, as the gRPC edge does."""
    app = wired.app
    app.create_program(PROGRAM, "P", reference_document(), "test", START, "create")
    app.enroll(PROGRAM, "alice", [("card_number", "a-1")], None, "enroll-alice")
    app.enroll(PROGRAM, "bob", [("card_number", "b-1")], None, "enroll-bob")
    line = OrderLine("l1", "SKU", "toys", 1, 12_345)
    _run(app, cmd.RecordPurchase("alice", "O1", (line,), 12_345), "buy-1")
    _run(app, cmd.RecordPurchase("bob", "O2", (line,), 12_345), "buy-2")
    app.advance_clock(PROGRAM, START + timedelta(days=30))  # activates the purchase points
    held = _run(app, cmd.HoldPoints("alice", "h1", "O3", 50, 5_000), "hold-1")
    assert held.balance.held == 50
    committed = _run(app, cmd.CommitHold("alice", "h1"), "commit-1")
    assert committed.balance.active == 73 and committed.balance.held == 0
    refunded = _run(app, cmd.RefundPurchase("alice", "O1", "R1", (cmd.RefundLine("l1", 12_345),)), "refund-1")
    assert refunded.balance.arrears == 50
    again = _run(app, cmd.CommitHold("alice", "h1"), "commit-1")  # an idempotent retry
    assert again.replayed


def _assert_projected(wired: Wired, members: list[str]) -> None:
    app = wired.app
    reads: Any = wired.backend.reads
    for member in members:
        report = app.verify_member(PROGRAM, member)
        assert report.ok, (member, report.mismatches)
        state = app.view(PROGRAM, member).state
        balance: Any = reads.balance(PROGRAM, member)
        assert balance is not None and balance.version == state.version
        assert balance.available == state.active - state.held
        entries, _ = reads.history(PROGRAM, member, 100, "")
        assert len(entries) == state.version
    assert app.lookup(PROGRAM, "card_number", "a-1") == "alice"
    last = wired.backend.store.read_all(after_position=0, limit=100_000)[-1].position
    assert reads.checkpoint() == last


def test_serving_on_stand_in(read_models: str) -> None:
    fake: Any = FakeKurrentDB()
    wired = _open(fake, read_models)
    try:
        assert wired.backend.kind == "kurrentdb"
        assert wired.backend.shared is (read_models.startswith("postgresql"))
        _scenario(wired)
        _assert_projected(wired, ["alice", "bob"])
    finally:
        _close(wired)


def test_a_failed_projection_is_answered_and_caught_up_by_the_next_commit_on_stand_in(
    read_models: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: Any = FakeKurrentDB()
    wired = _open(fake, read_models)
    try:
        _scenario(wired)
        projector = wired.backend.projector

        def broken(conn: Any, updates: Any) -> None:
            raise RuntimeError("read-model database down")

        monkeypatch.setattr(projector, "apply", broken)
        line = OrderLine("l1", "SKU", "toys", 1, 2_000)
        result = _run(wired.app, cmd.RecordPurchase("bob", "O9", (line,), 2_000), "buy-9")  # answered
        assert result.version == wired.app.view(PROGRAM, "bob").state.version  # the cache follows the log
        assert not wired.app.verify_member(PROGRAM, "bob").ok  # the read models lag
        monkeypatch.undo()
        _run(wired.app, cmd.RecordPurchase("alice", "O10", (line,), 2_000), "buy-10")  # sees the gap, catches up
        _assert_projected(wired, ["alice", "bob"])
    finally:
        _close(wired)


def test_a_failed_projection_is_caught_up_at_the_next_startup_on_stand_in(
    read_models: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: Any = FakeKurrentDB()
    wired = _open(fake, read_models)
    try:
        _scenario(wired)
        monkeypatch.setattr(wired.backend.projector, "apply", lambda conn, updates: 1 / 0)
        line = OrderLine("l1", "SKU", "toys", 1, 2_000)
        _run(wired.app, cmd.RecordPurchase("bob", "O9", (line,), 2_000), "buy-9")
        wired.app.enroll(PROGRAM, "carol", [("card_number", "c-1")], None, "enroll-carol")
        monkeypatch.undo()
    finally:
        _close(wired)
    wired = _open(fake, read_models)  # a restart (same log, same read models) catches up before serving
    try:
        _assert_projected(wired, ["alice", "bob", "carol"])
        assert wired.app.lookup(PROGRAM, "card_number", "c-1") == "carol"
    finally:
        _close(wired)


@pytest.mark.kurrentdb
@pytest.mark.skipif(KURRENTDB_URI is None, reason="KURRENTDB_URI not set: no KurrentDB server to serve on")
def test_serving_on_a_real_server(tmp_path: Path) -> None:
    assert KURRENTDB_URI is not None
    settings = Settings(store_url=KURRENTDB_URI, reference_program=False)
    namespace = f"t{uuid.uuid4().hex[:12]}-"
    read_models = f"sqlite:///{tmp_path / 'read-models.db'}"
    wired = _open(None, read_models, settings, namespace)
    try:
        _scenario(wired)
        _assert_projected(wired, ["alice", "bob"])
    finally:
        _close(wired)
    wired = _open(None, read_models, settings, namespace)
    try:
        _assert_projected(wired, ["alice", "bob"])
    finally:
        _close(wired)
