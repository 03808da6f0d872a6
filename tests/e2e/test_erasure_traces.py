"""After an erasure, nothing of the member's personal data is left to read in the stores or on the feed.

A real server per backend: the raw bytes of every file it wrote (SQLite databases, their ``-wal`` files, the
vault and its key file, the server log), or on PostgreSQL the text of every row of the ledger's and the keys'
schemas, and every feed message of the log are searched for the phone number, the baby's birth date and the
member's data key. The key is found before the erasure (so the search can see it) and nowhere after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql

from ledger.bootstrap import Settings, build
from ledger.feed.integration import to_message
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import common_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc
from tests.e2e.conftest import LITTLE_SPROUT, ROOT, START, Program, Server, ts
from tests.e2e.test_erasure import BABY_BORN, PHONE, enrol_earn_and_redeem, erase_request

pytestmark = pytest.mark.e2e

MEMBER = "m-traces"


@contextlib.contextmanager
def running(tmp_path: Path, backend: str) -> Iterator[RunningServer]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with contextlib.ExitStack() as stack:
        store_url = None
        if backend == "postgresql":
            from ledger.testing.postgres import fresh_schema, require_postgres

            store_url = stack.enter_context(fresh_schema(require_postgres()))
        server = start_server(tmp_path, store_url=store_url, env=env, cwd=ROOT)
        try:
            yield server
        finally:
            stop_server(server.process, timeout=20)


def program_on(server: RunningServer, channel: grpc.Channel) -> Program:
    """A Little Sprout program on a test clock on this server (as the e2e ``program`` fixture makes one)."""
    wrapped = Server(
        server.target, channel, server.process, server.log_path, server.api_key, server.store_url
    )
    program_pb2_grpc.ProgramServiceStub(wrapped.channel).CreateProgram(
        program_pb2.CreateProgramRequest(
            program_id="ls_traces",
            display_name="Little Sprout (traces)",
            document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
            idempotency_key="create-traces",
        )
    )
    return Program(wrapped, "ls_traces", itertools.count(1))


def sqlite_key(tmp_path: Path) -> bytes:
    with contextlib.closing(
        sqlite3.connect(f"file:{tmp_path / 'ledger.personal.keys.db'}?mode=ro", uri=True)
    ) as db:
        row = db.execute("SELECT key FROM member_key WHERE member_id = ?", (MEMBER,)).fetchone()
    assert row is not None
    return bytes(row[0])


def sqlite_bytes(tmp_path: Path) -> dict[str, bytes]:
    """Every file the server wrote, by name, as raw bytes."""
    return {f.name: f.read_bytes() for f in sorted(tmp_path.iterdir()) if f.is_file()}


def postgres_schema(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


def postgres_key(url: str) -> bytes:
    keys = sql.Identifier(postgres_schema(url) + "_keys")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            sql.SQL("SELECT key FROM {}.member_key WHERE member_id = %s").format(keys), (MEMBER,)
        ).fetchone()
    assert row is not None
    return bytes(row[0])


def postgres_rows(url: str) -> dict[str, bytes]:
    """Every row of every table of the ledger's schema and of its keys schema, as text, by table."""
    schema = postgres_schema(url)
    out: dict[str, bytes] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN (%s, %s)",
            (schema, schema + "_keys"),
        ).fetchall()
        assert any(s == schema + "_keys" for s, _ in tables)
        for table_schema, table in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(table_schema), sql.Identifier(table)
            )
            out[f"{table_schema}.{table}"] = "\n".join(r[0] for r in conn.execute(query)).encode()
    return out


def needles(key: bytes) -> dict[str, bytes]:
    return {
        "phone": PHONE.encode(),
        "phone digits": PHONE.lstrip("+").encode(),
        "baby's birth date": BABY_BORN.encode(),
        "data key": key,
        "data key as hex": key.hex().encode(),
    }


def found(haystacks: dict[str, bytes], key: bytes) -> list[tuple[str, str]]:
    return [
        (what, name)
        for name, data in haystacks.items()
        for what, needle in needles(key).items()
        if needle in data
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nothing_personal_is_left_in_the_stores_or_on_the_feed(tmp_path: Path, backend: str) -> None:
    with running(tmp_path, backend) as server:
        store_url = server.store_url
        with server.channel() as channel:
            program = program_on(server, channel)
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            enrol_earn_and_redeem(ledger, program, MEMBER)
            if backend == "sqlite":
                key = sqlite_key(tmp_path)
                before = sqlite_bytes(tmp_path)
            else:
                key = postgres_key(store_url)
                before = postgres_rows(store_url)
            assert [w for w, _ in found(before, key)] == [
                "data key" if backend == "sqlite" else "data key as hex"
            ]
            ledger.EraseMember(erase_request(program, MEMBER, "erase-traces"))
            after = sqlite_bytes(tmp_path) if backend == "sqlite" else postgres_rows(store_url)
            assert found(after, key) == []
            assert found({"server log": server.log_path.read_bytes()}, key) == []
        wired = build(Settings(store_url=store_url, reference_program=False))
        try:
            events = wired.backend.store.read_all(0, 10_000)
            messages = [m for m in (to_message(e) for e in events) if m is not None]
            assert "MemberErased" in {e.type for e in events}
            feed = {m.msg_id: m.data + repr(sorted(m.headers.items())).encode() for m in messages}
            assert found(feed, key) == []
            erased = next(m for m in messages if m.headers["Loyalty-Event-Type"] == "MemberErased")
            assert (
                b"DSR-2026-0042" in erased.data and b"service desk" not in erased.data
            )  # the reason stays out
        finally:
            wired.app.close()
            wired.backend.personal.close()
            wired.backend.store.close()
