"""The writer is supervised: if its thread dies, the call it was deciding is answered UNAVAILABLE, health says
NOT_SERVING until a new thread runs, the new thread rebuilds every state from the log, and nothing is applied
twice. A probe of the store that fails (or hangs) turns health NOT_SERVING and makes writes fail fast."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger.application import command_staging
from ledger.application.clock import ManualClock
from ledger.application.supervisor import Supervisor
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.streams import member_stream
from ledger.entrypoints.grpc.server import build_server, server_health, set_serving
from ledger.eventlog.port import StoreError
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc
from tests.robustness.helpers import code_of, poll, timed

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "supervised"
OPERATOR = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


class Fatal(BaseException):
    """Not an Exception: what ends a thread (as an interpreter-level failure would)."""


class Harness:
    def __init__(self, wired: Wired, port: int, supervisor: Supervisor, seen: list[bool]) -> None:
        self.wired = wired
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.ledger = ledger_pb2_grpc.LedgerServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.supervisor = supervisor
        self.seen = seen
        self.probe_fails = threading.Event()
        self.probe_hangs = threading.Event()
        self.hang_over = threading.Event()

    def status(self) -> int:
        return int(self.health.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


@pytest.fixture
def harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    wired = build(Settings(store_url=f"sqlite:///{tmp_path / 'ledger.db'}", reference_program=False),
                  clock=ManualClock(START))  # fmt: skip
    wired.app.create_program(PROGRAM, "Supervised", reference_document(), "test", START, "c")
    wired.app.enroll(PROGRAM, "m1", [], None, "e1")
    dies = {"left": 1}
    real = command_staging.decide  # type: ignore[attr-defined]

    def decide(command: Any, state: Any, ctx: Any) -> Any:
        if isinstance(command, cmd.AdjustPoints) and command.reason_code == "DIE" and dies["left"]:
            dies["left"] -= 1
            raise Fatal("the writer thread ends here")
        return real(command, state, ctx)

    monkeypatch.setattr(command_staging, "decide", decide)
    server, port = build_server(wired.app, "127.0.0.1:0", max_workers=8)
    server.start()
    seen: list[bool] = []
    holder: list[Harness] = []

    def probe() -> None:
        h = holder[0]
        if h.probe_hangs.is_set():
            h.hang_over.wait(30)
        if h.probe_fails.is_set():
            raise StoreError("the database does not answer")

    def on_change(serving: bool) -> None:
        seen.append(serving)
        set_serving(server_health[server], serving)

    supervisor = Supervisor(wired.app.writer, probe, on_change, interval=0.1, probe_timeout=0.5)
    h = Harness(wired, port, supervisor, seen)
    holder.append(h)
    supervisor.start()
    try:
        yield h
    finally:
        h.hang_over.set()
        supervisor.stop()
        h.channel.close()
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()


def adjust(key: str, reason: str = "GOODWILL") -> ledger_pb2.AdjustPointsRequest:
    return ledger_pb2.AdjustPointsRequest(
        program_id=PROGRAM, idempotency_key=key, member_id="m1", points=5, reason_code=reason, note="n", context=OPERATOR
    )


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_that_dies_is_restarted_and_applies_nothing_twice(harness: Harness) -> None:
    h = harness
    store = h.wired.app.store
    stream = member_stream(PROGRAM, "m1")
    assert h.ledger.AdjustPoints(adjust("before")).balance_after.active == 5
    version = store.stream_version(stream)
    result, seconds = timed(lambda: h.ledger.AdjustPoints(adjust("fatal", "DIE"), timeout=10))
    assert code_of(result) == grpc.StatusCode.UNAVAILABLE and seconds < 5
    poll(lambda: h.seen == [False, True], within=10, message="health went NOT_SERVING, then SERVING again")
    assert h.wired.app.writer.restarts == 1 and h.wired.app.writer.alive
    assert h.status() == health_pb2.HealthCheckResponse.SERVING
    assert store.stream_version(stream) == version  # nothing of the command the writer died on
    # The retry with the same key applies once; the next retry is answered from the record.
    first = h.ledger.AdjustPoints(adjust("fatal", "DIE"))
    again = h.ledger.AdjustPoints(adjust("fatal", "DIE"))
    assert not first.replayed and again.replayed and first.balance_after.active == 10
    assert h.ledger.AdjustPoints(adjust("after")).balance_after.active == 15
    assert store.stream_version(stream) == version + 2


@pytest.mark.parametrize("fault", ["fails", "hangs"])
def test_an_unreachable_store_turns_health_off_and_writes_fail_fast(harness: Harness, fault: str) -> None:
    h = harness
    (h.probe_fails if fault == "fails" else h.probe_hangs).set()
    poll(lambda: h.status() == health_pb2.HealthCheckResponse.NOT_SERVING, within=5, message="NOT_SERVING")
    result, seconds = timed(lambda: h.ledger.AdjustPoints(adjust("cut"), timeout=10))
    assert code_of(result) == grpc.StatusCode.UNAVAILABLE and seconds < 1
    assert h.wired.app.store.find_command(PROGRAM, "cut") is None
    h.probe_fails.clear()
    h.probe_hangs.clear()
    h.hang_over.set()
    poll(lambda: h.status() == health_pb2.HealthCheckResponse.SERVING, within=10, message="SERVING again")
    assert h.ledger.AdjustPoints(adjust("cut")).balance_after.active == 5
    assert h.ledger.AdjustPoints(adjust("cut")).replayed
