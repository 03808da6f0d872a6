"""End-to-end fixtures: a real ``ledger serve`` process on a fresh SQLite store, driven over gRPC."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


def _command(store_url: str, port_file: Path) -> list[str]:
    python = str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    if os.environ.get("LEDGER_E2E_STANDIN") == "1":
        return [python, "-m", "tests.e2e.standin_server", "--store", store_url,
                "--listen", "127.0.0.1:0", "--port-file", str(port_file)]
    return [python, "-m", "ledger.cli", "--store", store_url, "serve",
            "--listen", "127.0.0.1:0", "--port-file", str(port_file)]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ledger-e2e")
    port_file = tmp / "port"
    log_path = tmp / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(f"sqlite:///{tmp / 'ledger.db'}", port_file), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"server did not write its port file:\n{log_path.read_text()}")
            time.sleep(0.05)
        target = f"127.0.0.1:{int(port_file.read_text())}"
        channel = grpc.insecure_channel(target)
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not SERVING:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield Server(target, channel, process, log_path)
        channel.close()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


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
