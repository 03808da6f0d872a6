"""Graceful shutdown of a real server: SIGTERM while many writes are in flight.

Every call must either succeed (and its member is there after a restart on the same store) or be refused as
UNAVAILABLE before it was accepted (and nothing of it was written); none may be cut off half-way (CANCELLED,
or an error for a write that happened). The process exits 0 within the documented grace period.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger.entrypoints.grpc.server import GRACE_SECONDS, SHUTDOWN_SECONDS
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc, query_pb2, query_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 24
PROGRAM = "little_sprout"


@dataclass
class Outcomes:
    ok: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    other: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def write_until_refused(running: RunningServer, n: int, outcomes: Outcomes, ids: itertools.count[int]) -> None:
    """Enroll new members one after the other until a call fails; record how each call ended."""
    with running.channel() as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        while True:
            member_id = f"m-{n}-{next(ids)}"
            try:
                ledger.EnrollMember(
                    ledger_pb2.EnrollMemberRequest(program_id=PROGRAM, idempotency_key=f"k-{member_id}", member_id=member_id),
                    timeout=60,
                )
            except grpc.RpcError as exc:
                code = exc.code()
                with outcomes.lock:
                    if code == grpc.StatusCode.UNAVAILABLE:
                        outcomes.refused.append((member_id, exc.details() or ""))
                    else:
                        outcomes.other.append((member_id, code.name, exc.details() or ""))
                return
            with outcomes.lock:
                outcomes.ok.append(member_id)


def test_sigterm_finishes_accepted_writes_and_refuses_the_rest(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # SQLite FULL: every group fsyncs, so writes are in flight
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--workers", "8"])
    outcomes = Outcomes()
    ids = itertools.count(1)
    threads = [threading.Thread(target=write_until_refused, args=(running, n, outcomes, ids)) for n in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(outcomes.ok) < 100:  # well under way: every client has calls in flight
            assert time.monotonic() < deadline, f"only {len(outcomes.ok)} writes in 60 s"
            assert not outcomes.other and not outcomes.refused, (outcomes.other, outcomes.refused)
            time.sleep(0.01)
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        returncode = running.process.wait(timeout=SHUTDOWN_SECONDS + 10)
        took = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    finally:
        stop_server(running.process)

    print(f"{len(outcomes.ok)} acknowledged, {len(outcomes.refused)} refused, exit after {took:.2f} s")
    assert returncode == 0
    assert took < SHUTDOWN_SECONDS, f"exited {took:.1f} s after SIGTERM"
    assert not outcomes.other, f"calls cut off instead of finished or refused: {outcomes.other[:5]}"
    assert len(outcomes.refused) == CLIENTS  # each client ends with one refused call
    assert any("shutting down" in details for _, details in outcomes.refused), outcomes.refused  # by the gate
    acked_before = len(outcomes.ok)

    # On a restart every acknowledged member is there, and no refused call left anything behind.
    (tmp_path / "port").unlink()
    again = start_server(tmp_path, env=env, cwd=ROOT)
    try:
        with again.channel() as channel:
            query = query_pb2_grpc.MemberQueryServiceStub(channel)
            for member_id in outcomes.ok:
                query.GetBalance(query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member_id))
            for member_id, details in outcomes.refused:
                with pytest.raises(grpc.RpcError) as caught:
                    query.GetBalance(query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member_id))
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND, f"{member_id} refused ({details}) yet written"
    finally:
        stop_server(again.process)
    assert acked_before >= 100
    assert GRACE_SECONDS < SHUTDOWN_SECONDS


def test_during_the_drain_health_says_not_serving_while_calls_are_still_taken(tmp_path: Path) -> None:
    drain = 5.0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--drain-seconds", str(drain)])
    try:
        with running.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel)
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            check = health_pb2.HealthCheckRequest(service="loyalty.v1.LedgerService")
            assert health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            signalled = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            while health.Check(check, timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() - signalled < drain, "health still SERVING after the drain"
                time.sleep(0.01)
            # NOT_SERVING now, and a new write is still taken and answered.
            ledger.EnrollMember(
                ledger_pb2.EnrollMemberRequest(program_id=PROGRAM, idempotency_key="k-drain", member_id="m-drain"),
                timeout=30,
            )
            assert time.monotonic() - signalled < drain, "the drain ended before the test could write: raise it"
        returncode = running.process.wait(timeout=drain + SHUTDOWN_SECONDS + 10)
        took = time.monotonic() - signalled
    finally:
        stop_server(running.process)
    assert returncode == 0
    assert drain <= took < drain + SHUTDOWN_SECONDS
