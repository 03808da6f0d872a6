"""Shared pieces of the robustness tests: a real server with its own settings, requests, timing by a monotonic clock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
LITTLE_SPROUT = (ROOT / "policies" / "little_sprout.yaml").read_text()
START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
T = TypeVar("T")


@contextmanager
def running(workdir: Path, *, store_url: str | None = None, env: Mapping[str, str] = {}) -> Iterator[RunningServer]:
    """``ledger serve`` (authentication on) with extra environment ``env``, stopped afterwards."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL", **env}
    server = start_server(workdir, store_url=store_url, env=full, cwd=ROOT, extra_args=["--no-reference-program"])
    try:
        yield server
    finally:
        stop_server(server.process, timeout=20)


def create_program(channel: grpc.Channel, program_id: str) -> None:
    start = Timestamp()
    start.FromDatetime(START)
    program_pb2_grpc.ProgramServiceStub(channel).CreateProgram(
        program_pb2.CreateProgramRequest(
            program_id=program_id, display_name="Robustness", document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=start),
            idempotency_key=f"create-{program_id}",
        )
    )  # fmt: skip


def enroll(channel: grpc.Channel, program_id: str, member_id: str, timeout: float = 10) -> None:
    ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember(
        ledger_pb2.EnrollMemberRequest(program_id=program_id, idempotency_key=f"enroll-{member_id}", member_id=member_id),
        timeout=timeout,
    )


def purchase(program_id: str, member_id: str, key: str, lines: int = 1) -> ledger_pb2.RecordPurchaseRequest:
    return ledger_pb2.RecordPurchaseRequest(
        program_id=program_id, idempotency_key=key, member_id=member_id, order_id=f"o-{key}",
        lines=[
            ledger_pb2.OrderLine(line_id=f"l{n}", sku=f"LS-WIPES-{n:03d}", category="care", quantity=1, paid_fen=1_000)
            for n in range(lines)
        ],
    )  # fmt: skip


def health_status(channel: grpc.Channel, timeout: float = 5) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    return int(reply.status)


def timed(call: Callable[[], T]) -> tuple[T | grpc.RpcError, float]:
    """What ``call`` returned (or the RpcError it raised) and how long it took, by the monotonic clock."""
    started = time.monotonic()
    try:
        result: T | grpc.RpcError = call()
    except grpc.RpcError as exc:
        result = exc
    return result, time.monotonic() - started


def poll(condition: Callable[[], bool], *, within: float, message: str, every: float = 0.05) -> float:
    """Poll ``condition`` until it holds; fail after ``within`` seconds. Returns how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s: {message}")
        time.sleep(every)
    return time.monotonic() - started


def retry_info(exc: grpc.RpcError) -> tuple[error_details_pb2.RetryInfo | None, error_details_pb2.ErrorInfo | None]:
    """The RetryInfo and ErrorInfo details of a failed call (None where absent)."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    retry: error_details_pb2.RetryInfo | None = None
    info: error_details_pb2.ErrorInfo | None = None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
    return retry, info


def code_of(result: Any) -> grpc.StatusCode:
    return result.code() if isinstance(result, grpc.RpcError) else grpc.StatusCode.OK
