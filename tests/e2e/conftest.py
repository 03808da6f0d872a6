"""End-to-end fixtures: a real ``ledger serve`` process on a fresh store (SQLite, then PostgreSQL), driven over gRPC."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.testing import start_server, stop_server
from loyalty.v1 import (
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2_grpc,
    program_pb2,
    program_pb2_grpc,
    query_pb2_grpc,
)

ROOT = Path(__file__).resolve().parents[2]
LITTLE_SPROUT = (ROOT / "policies" / "little_sprout.yaml").read_text()
CST = timezone(timedelta(hours=8))
START = datetime(2026, 3, 10, 10, 0, tzinfo=CST)
STARTUP_SECONDS = 30.0
BACKENDS = ("sqlite", "postgresql")

pytestmark = pytest.mark.e2e


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value.astimezone(UTC))
    return out


def dt(value: Timestamp) -> datetime:
    return value.ToDatetime(tzinfo=UTC)


@dataclass
class Server:
    target: str
    channel: grpc.Channel
    process: subprocess.Popen[bytes]
    log_path: Path
    store_url: str = ""

    @property
    def programs(self) -> program_pb2_grpc.ProgramServiceStub:
        return program_pb2_grpc.ProgramServiceStub(self.channel)

    @property
    def ledger(self) -> ledger_pb2_grpc.LedgerServiceStub:
        return ledger_pb2_grpc.LedgerServiceStub(self.channel)

    @property
    def query(self) -> query_pb2_grpc.MemberQueryServiceStub:
        return query_pb2_grpc.MemberQueryServiceStub(self.channel)

    @property
    def audit(self) -> audit_pb2_grpc.AuditServiceStub:
        return audit_pb2_grpc.AuditServiceStub(self.channel)


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per backend for the whole session: every e2e test runs on SQLite and on PostgreSQL."""
    tmp = tmp_path_factory.mktemp(f"ledger-e2e-{request.param}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    with contextlib.ExitStack() as stack:
        store_url = None
        if request.param == "postgresql":
            from ledger.store.postgres_testing import fresh_schema, require_postgres

            store_url = stack.enter_context(fresh_schema(require_postgres()))
        running = start_server(tmp, store_url=store_url, env=env, cwd=ROOT, startup_seconds=STARTUP_SECONDS)
        channel = grpc.insecure_channel(running.target)
        try:
            yield Server(
                running.target, channel, running.process, running.log_path, store_url or f"sqlite:///{tmp / 'ledger.db'}"
            )
        finally:
            channel.close()
            stop_server(running.process, timeout=20)


_program_numbers = itertools.count(1)


@dataclass
class Program:
    server: Server
    program_id: str
    keys: itertools.count[int]

    def key(self, tag: str = "k") -> str:
        return f"{tag}-{next(self.keys)}"

    def advance(self, to: datetime) -> program_pb2.AdvanceClockResponse:
        return self.server.programs.AdvanceClock(
            program_pb2.AdvanceClockRequest(program_id=self.program_id, to=ts(to), idempotency_key=self.key("clock"))
        )


@pytest.fixture
def program(server: Server) -> Program:
    """A fresh Little Sprout program on a test clock at 2026-03-10 10:00 (+08:00)."""
    program_id = f"ls_t{next(_program_numbers)}_{os.getpid()}"
    server.programs.CreateProgram(
        program_pb2.CreateProgramRequest(
            program_id=program_id,
            display_name="Little Sprout (test)",
            document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
            idempotency_key=f"create-{program_id}",
        )
    )
    return Program(server, program_id, itertools.count(1))
