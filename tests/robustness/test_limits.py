"""Limits on calls, in process over gRPC with authentication on: streams per key and in all, the bounded write
queue, and the deadline of every call. Each refusal is RESOURCE_EXHAUSTED with RetryInfo (or DEADLINE_EXCEEDED)
and writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.python.loyalty_client import keyed_channel
from ledger.application import command_staging
from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints.grpc.auth import Authenticator
from ledger.entrypoints.grpc.limits import CallLimits
from ledger.entrypoints.grpc.server import build_server, server_health
from loyalty.v1 import audit_pb2, audit_pb2_grpc, common_pb2, ledger_pb2, ledger_pb2_grpc
from tests.robustness.helpers import code_of, poll, retry_info, timed

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "limits"
OPERATOR = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


class Served:
    def __init__(self, wired: Wired, limits: CallLimits, target: str) -> None:
        self.wired = wired
        self.limits = limits
        self.target = target
        self.keys: dict[str, str] = {}

    def channel(self, role: str) -> grpc.Channel:
        if role not in self.keys:
            self.keys[role] = self.wired.keys.issue(PROGRAM, role)[1]
        return keyed_channel(self.target, self.keys[role])

    def channel_of_new_key(self, role: str) -> grpc.Channel:
        return keyed_channel(self.target, self.wired.keys.issue(PROGRAM, role)[1])


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'ledger.db'}", reference_program=False, write_queue=2)
    wired = build(settings, clock=ManualClock(START))
    wired.app.create_program(PROGRAM, "Limits", reference_document(), "test", START, "c")
    wired.app.enroll(PROGRAM, "m1", [], None, "e1")
    limits = CallLimits(call_timeout=1.0, max_streams=3, max_streams_per_key=2)
    server, port = build_server(
        wired.app, "127.0.0.1:0", max_workers=16, interceptors=[Authenticator(wired.keys), limits]
    )
    server.start()
    try:
        yield Served(wired, limits, f"127.0.0.1:{port}")
    finally:
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()


@pytest.fixture
def held_replays(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Replays that wait for the returned event before their first page, so they stay open."""
    go = threading.Event()
    real = served.wired.app.replay

    def replay(*args: Any, **kwargs: Any) -> Iterator[Any]:
        assert go.wait(30)
        yield from real(*args, **kwargs)

    monkeypatch.setattr(served.wired.app, "replay", replay)
    yield go
    go.set()


@pytest.fixture
def held_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Commands with reason WAIT hold the writer until the second event is set (the first says one is held)."""
    entered, go = threading.Event(), threading.Event()
    real = command_staging.decide  # type: ignore[attr-defined]

    def decide(command: Any, state: Any, ctx: Any) -> Any:
        if isinstance(command, cmd.AdjustPoints) and command.reason_code == "WAIT":
            entered.set()
            assert go.wait(30)
        return real(command, state, ctx)

    monkeypatch.setattr(command_staging, "decide", decide)
    yield entered, go
    go.set()


def replay(channel: grpc.Channel) -> Any:
    return audit_pb2_grpc.AuditServiceStub(channel).ReplayMember(
        audit_pb2.ReplayMemberRequest(program_id=PROGRAM, member_id="m1"), timeout=30
    )


def adjust(key: str, reason: str = "GOODWILL") -> ledger_pb2.AdjustPointsRequest:
    return ledger_pb2.AdjustPointsRequest(
        program_id=PROGRAM, idempotency_key=key, member_id="m1", points=5, reason_code=reason, note="n", context=OPERATOR
    )


def test_streams_per_key_and_in_all_are_limited(served: Served, held_replays: threading.Event) -> None:
    auditor = served.channel("auditor")
    first, second = replay(auditor), replay(auditor)
    poll(lambda: served.limits.streams == 2, within=10, message="two streams of one key admitted")
    third = replay(auditor)
    with pytest.raises(grpc.RpcError) as caught:
        next(third)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    retry, info = retry_info(caught.value)
    assert retry is not None and retry.retry_delay.ToMilliseconds() == 1000
    assert info is not None and info.reason == "TOO_MANY_STREAMS" and info.metadata["scope"] == "KEY"
    # Another key still gets a stream, up to the limit in all (3); the next one of any key is refused.
    other = replay(served.channel_of_new_key("auditor"))
    poll(lambda: served.limits.streams == 3, within=10, message="a stream of another key admitted")
    with pytest.raises(grpc.RpcError) as caught:
        next(replay(served.channel_of_new_key("auditor")))
    _, info = retry_info(caught.value)
    assert info is not None and info.metadata["scope"] == "SERVER"
    held_replays.set()
    for call in (first, second, other):
        assert sum(len(page.events) for page in call) >= 1
    poll(lambda: served.limits.streams == 0, within=10, message="finished streams give their slots back")
    assert sum(len(page.events) for page in replay(auditor)) >= 1


def test_a_cancelled_stream_gives_its_slot_back(served: Served, held_replays: threading.Event) -> None:
    auditor = served.channel("auditor")
    calls = [replay(auditor), replay(auditor)]
    poll(lambda: served.limits.streams == 2, within=10, message="two streams admitted")
    for call in calls:
        call.cancel()
    held_replays.set()
    poll(lambda: served.limits.streams == 0, within=10, message="cancelled streams give their slots back")


def test_a_full_write_queue_sheds_at_once(served: Served, held_writer: tuple[threading.Event, threading.Event]) -> None:
    entered, go = held_writer
    ledger = ledger_pb2_grpc.LedgerServiceStub(served.channel("operator"))
    blocker = ledger.AdjustPoints.future(adjust("wait", "WAIT"), timeout=30)
    assert entered.wait(10)
    queued = [ledger.AdjustPoints.future(adjust(f"q{n}"), timeout=30) for n in range(2)]
    poll(lambda: served.wired.app.writer.queued == 2, within=10, message="the queue (2) is full")
    result, seconds = timed(lambda: ledger.AdjustPoints(adjust("shed"), timeout=10))
    assert code_of(result) == grpc.StatusCode.RESOURCE_EXHAUSTED and seconds < 1.0
    assert isinstance(result, grpc.RpcError)
    retry, info = retry_info(result)
    assert retry is not None and retry.retry_delay.ToMilliseconds() > 0
    assert info is not None and info.reason == "WRITE_QUEUE_FULL"
    go.set()
    assert blocker.result().points == 5 and all(q.result().points == 5 for q in queued)
    assert served.wired.app.store.find_command(PROGRAM, "shed") is None
    assert ledger.AdjustPoints(adjust("shed")).points == 5  # the retry, once there is room, is applied once


def test_every_call_has_a_deadline(served: Served, held_writer: tuple[threading.Event, threading.Event]) -> None:
    entered, go = held_writer
    ledger = ledger_pb2_grpc.LedgerServiceStub(served.channel("operator"))
    blocker = ledger.AdjustPoints.future(adjust("wait", "WAIT"), timeout=30)
    assert entered.wait(10)
    # No deadline from the client: the server's maximum (1 s here) ends the wait.
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        ledger.AdjustPoints(adjust("late"))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 < time.monotonic() - started < 5
    # A client's shorter deadline wins.
    result, seconds = timed(lambda: ledger.AdjustPoints(adjust("later"), timeout=0.3))
    assert code_of(result) == grpc.StatusCode.DEADLINE_EXCEEDED and seconds < 0.9
    go.set()
    # The blocker was being decided when its own deadline passed: it is answered DEADLINE_EXCEEDED, and applied
    # (an answer of DEADLINE_EXCEEDED means "may or may not have been applied": the retry tells).
    assert code_of(blocker.exception()) == grpc.StatusCode.DEADLINE_EXCEEDED
    # The writer dropped both (their callers had given up): nothing of them is written, and a retry applies once.
    poll(lambda: served.wired.app.writer.queued == 0, within=10, message="the writer drained its queue")
    assert ledger.AdjustPoints(adjust("wait", "WAIT")).replayed
    store = served.wired.app.store
    assert store.find_command(PROGRAM, "late") is None and store.find_command(PROGRAM, "later") is None
    first = ledger.AdjustPoints(adjust("late"))
    again = ledger.AdjustPoints(adjust("late"))
    assert first.points == 5 and again.replayed and again.balance_after == first.balance_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_call_that_waited_too_long_for_a_worker_is_shed(
    tmp_path: Path, held_writer: tuple[threading.Event, threading.Event]
) -> None:
    entered, go = held_writer
    wired = build(Settings(store_url=f"sqlite:///{tmp_path / 'ledger.db'}", reference_program=False),
                  clock=ManualClock(START))  # fmt: skip
    wired.app.create_program(PROGRAM, "Limits", reference_document(), "test", START, "c")
    wired.app.enroll(PROGRAM, "m1", [], None, "e1")
    clock = FakeClock()
    limits = CallLimits(max_worker_wait=2.0, monotonic=clock)
    server, port = build_server(wired.app, "127.0.0.1:0", max_workers=2, interceptors=[limits])
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            busy = [ledger.AdjustPoints.future(adjust("wait", "WAIT"), timeout=30)]
            assert entered.wait(10)
            busy.append(ledger.AdjustPoints.future(adjust("second"), timeout=30))  # the second worker
            poll(lambda: wired.app.writer.queued == 1, within=10, message="both workers busy")
            late = ledger.AdjustPoints.future(adjust("late"), timeout=30)
            poll(lambda: limits.arrived == 3, within=10, message="the third call arrived")
            clock.now += 2.5  # it waits for a worker longer than the limit
            go.set()
            assert all(call.result().points == 5 for call in busy)
            failure = late.exception()
            assert isinstance(failure, grpc.RpcError) and failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            retry, info = retry_info(failure)
            assert retry is not None and retry.retry_delay.ToMilliseconds() == 500
            assert info is not None and info.reason == "SERVER_BUSY"
            assert wired.app.store.find_command(PROGRAM, "late") is None  # nothing of it was done
            assert ledger.AdjustPoints(adjust("late")).points == 5  # a worker is free now: the retry goes through
    finally:
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()
