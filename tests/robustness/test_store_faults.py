"""The store is cut under load and comes back: a real ``ledger serve`` (authentication on) on each backend.

PostgreSQL: the test database is one of its own (the cut is ``ALTER DATABASE ... ALLOW_CONNECTIONS false`` and
``pg_terminate_backend`` on its connections, which must touch nothing else). SQLite: another process holds the
database's write lock (``BEGIN IMMEDIATE``), as a stuck maintenance job would. While cut, writes answer
UNAVAILABLE fast (a bound on a monotonic clock, as a correctness bound, not a performance target) and health says
NOT_SERVING; once restored, health is SERVING again and writes succeed by themselves. Nothing acknowledged is
lost: every write answered OK is in the log, and every write retried with its key is applied exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import pytest
from psycopg import sql

from ledger.testing.postgres import require_postgres
from loyalty.v1 import ledger_pb2_grpc
from tests.robustness.helpers import (
    NOT_SERVING,
    SERVING,
    code_of,
    create_program,
    enroll,
    health_status,
    poll,
    purchase,
    running,
    timed,
)

pytestmark = pytest.mark.e2e

PROGRAM = "faults"
WRITERS = 4
UNAVAILABLE_BOUND = 5.0
"""Seconds within which a write to a cut store must be answered (it used to take the pool's 30 s)."""


class Fault:
    """A store that can be cut and restored."""

    url: str | None = None

    def cut(self) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError

    def events(self, query: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError


class PostgresFault(Fault):
    def __init__(self, url: str, name: str) -> None:
        self.url = self.name_url = url
        self.name = name

    def cut(self) -> None:
        cut(self.name, allow=False)

    def restore(self) -> None:
        cut(self.name, allow=True)

    def events(self, query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.name_url) as conn:
            return list(conn.execute(query.encode()).fetchall())


class SqliteFault(Fault):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.holder: sqlite3.Connection | None = None

    def cut(self) -> None:
        self.holder = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.holder.execute("BEGIN IMMEDIATE")

    def restore(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None

    def events(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as conn:
            return list(conn.execute(query).fetchall())


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    if request.param == "sqlite":
        found: Fault = SqliteFault(tmp_path / "ledger.db")
        try:
            yield found
        finally:
            found.restore()
        return
    with database() as (url, name):
        found = PostgresFault(url, name)
        try:
            yield found
        finally:
            found.restore()


@contextmanager
def database() -> Iterator[tuple[str, str]]:
    """A database of this test's own: its URL and name (dropped afterwards, connections and all)."""
    base = require_postgres()
    name = f"ledger_fault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}")), name
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def cut(name: str, *, allow: bool) -> None:
    """Refuse (or allow again) new connections to database ``name``; when refusing, end the ones it has."""
    with psycopg.connect(require_postgres(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allow else "false")
            )
        )
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


class Load:
    """Writers that keep recording purchases, each with a key of its own, and note every answer."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[str, str, grpc.StatusCode, float]] = []  # member, key, code, seconds
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(WRITERS)]

    def _run(self, n: int) -> None:
        member = f"m{n}"
        count = 0
        while not self.stop.is_set():
            count += 1
            key = f"{member}-{count}"
            result, seconds = timed(lambda: self.ledger.RecordPurchase(purchase(PROGRAM, member, key), timeout=30))  # noqa: B023
            with self.lock:
                self.answers.append((member, key, code_of(result), seconds))

    def since(self, start: int) -> list[tuple[str, str, grpc.StatusCode, float]]:
        with self.lock:
            return self.answers[start:]

    def __len__(self) -> int:
        with self.lock:
            return len(self.answers)


def test_a_cut_store_answers_unavailable_fast_and_recovers(tmp_path: Path, fault: Fault) -> None:
    with running(tmp_path, store_url=fault.url) as server:
        channel = server.channel()
        create_program(channel, PROGRAM)
        for n in range(WRITERS):
            enroll(channel, PROGRAM, f"m{n}")
        load = Load(channel)
        for t in load.threads:
            t.start()
        try:
            poll(lambda: len(load) >= 40, within=60, message="the load is running")
            cut_at = len(load)
            fault.cut()
            try:
                poll(lambda: health_status(channel) == NOT_SERVING, within=UNAVAILABLE_BOUND, message="NOT_SERVING")
                during = len(load)
                poll(lambda: len(load.since(during)) >= 2 * WRITERS, within=30, message="writes answered while cut")
                failed = [a for a in load.since(during) if a[2] != grpc.StatusCode.OK]
                assert failed and all(a[2] == grpc.StatusCode.UNAVAILABLE for a in failed), failed[:5]
                slowest = max(a[3] for a in load.since(cut_at))
                print(f"answers while cut: {len(load.since(cut_at))}, slowest {slowest:.3f} s")
                assert slowest < UNAVAILABLE_BOUND
                result, seconds = timed(lambda: load.ledger.RecordPurchase(purchase(PROGRAM, "m0", "probe"), timeout=30))
                assert code_of(result) == grpc.StatusCode.UNAVAILABLE and seconds < UNAVAILABLE_BOUND
                assert health_status(channel) == NOT_SERVING
            finally:
                fault.restore()
            back = poll(lambda: health_status(channel) == SERVING, within=30, message="SERVING again")
            restored = len(load)
            poll(
                lambda: sum(a[2] == grpc.StatusCode.OK for a in load.since(restored)) >= WRITERS,
                within=30, message="writes succeed again",
            )  # fmt: skip
            print(f"SERVING again {back:.3f} s after the restore")
        finally:
            load.stop.set()
            for t in load.threads:
                t.join(60)
        # Nothing acknowledged lost, nothing applied twice: retry every write not answered OK with its key.
        answers = [*load.since(0), ("m0", "probe", grpc.StatusCode.UNAVAILABLE, 0.0)]
        for member, key, code, _ in answers:
            if code != grpc.StatusCode.OK:
                load.ledger.RecordPurchase(purchase(PROGRAM, member, key), timeout=30)
            assert load.ledger.RecordPurchase(purchase(PROGRAM, member, key), timeout=30).replayed
        rows = fault.events(
            "SELECT idempotency_key, count(*) FROM events WHERE type = 'PurchaseRecorded' GROUP BY idempotency_key"
        )
        applied = {str(k): int(c) for k, c in rows}
        assert set(applied) == {key for _, key, _, _ in answers}
        assert set(applied.values()) == {1}
        channel.close()
