"""A command whose decision raises fails alone: the other commands of its group commit, the writer keeps serving,
and over gRPC the caller gets INTERNAL with an error id that the log carries with the trace. A writer that has
stopped turns health to NOT_SERVING."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ledger.application import command_staging
from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.streams import member_stream
from ledger.entrypoints.grpc.server import build_server, server_health, watch_writer
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "iso"
ENTERED = threading.Event()
GO = threading.Event()


@pytest.fixture
def wired(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Wired]:
    w = build(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))
    w.app.create_program(PROGRAM, "Isolation", reference_document(), "test", START, "c")
    for member in ("a", "b", "c"):
        w.app.enroll(PROGRAM, member, [], None, f"e-{member}")
    real_decide = command_staging.decide  # type: ignore[attr-defined]

    def decide(command: Any, state: Any, ctx: Any) -> Any:
        if isinstance(command, cmd.AdjustPoints) and command.reason_code == "BOOM":
            raise RuntimeError("a bug in a rule")
        if isinstance(command, cmd.AdjustPoints) and command.reason_code == "WAIT":
            ENTERED.set()
            assert GO.wait(30)
        return real_decide(command, state, ctx)

    monkeypatch.setattr(command_staging, "decide", decide)
    yield w
    w.app.close()


def adjust(member: str, key: str, reason: str = "GOODWILL", points: int = 10) -> cmd.Envelope:
    return cmd.Envelope(PROGRAM, cmd.AdjustPoints(member, points, reason, "note", "op-1"), key)


def test_a_failing_command_fails_alone_in_its_group(wired: Wired) -> None:
    app = wired.app
    store = app.store
    heads = {m: store.stream_version(member_stream(PROGRAM, m)) for m in ("a", "b", "c")}
    group = [adjust("a", "g1"), adjust("b", "bad", "BOOM"), adjust("a", "g2"), adjust("c", "g3")]
    results: list[Any] = []
    # Hold the writer inside a first command, so that the four queue up and are decided as one group.
    ENTERED.clear()
    GO.clear()
    blocker = threading.Thread(target=app.writer.execute, args=(adjust("c", "wait", "WAIT"),))
    blocker.start()
    assert ENTERED.wait(30)
    submitter = threading.Thread(target=lambda: results.extend(app.writer.execute_many(group)))
    submitter.start()
    while app.writer._queue.qsize() < len(group):
        pass
    GO.set()
    blocker.join(30)
    submitter.join(30)
    good_a1, bad, good_a2, good_c = results
    assert isinstance(bad, RuntimeError)
    assert good_a1.balance.active == 10 and good_a2.balance.active == 20 and good_c.balance.active == 20
    assert store.stream_version(member_stream(PROGRAM, "b")) == heads["b"]  # nothing of the bad command
    assert store.stream_version(member_stream(PROGRAM, "a")) == heads["a"] + 2
    assert store.find_command(PROGRAM, "bad") is None
    assert store.find_command(PROGRAM, "g3") is not None
    # The writer still serves; the member of the failed command too.
    assert app.writer.alive
    assert app.execute(adjust("b", "after")).balance.active == 10


def test_internal_error_has_an_id_that_the_log_carries(wired: Wired) -> None:
    server, port = build_server(wired.app, "127.0.0.1:0", max_workers=4)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, structlog.testing.capture_logs() as logs:
            stub = ledger_pb2_grpc.LedgerServiceStub(channel)

            def request(key: str, reason: str) -> ledger_pb2.AdjustPointsRequest:
                return ledger_pb2.AdjustPointsRequest(
                    program_id=PROGRAM, idempotency_key=key, member_id="a", points=5, reason_code=reason, note="n",
                    context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1"),
                )  # fmt: skip

            with pytest.raises(grpc.RpcError) as caught:
                stub.AdjustPoints(request("k-bad", "BOOM"))
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
            assert status is not None
            info = error_details_pb2.RequestInfo()
            assert status.details[0].Unpack(info)
            assert info.request_id and info.request_id in status.message
            logged = [e for e in logs if e.get("event") == "rpc_failed"]
            assert [e["error_id"] for e in logged] == [info.request_id]
            assert logged[0]["exc_info"] is not None
            assert stub.AdjustPoints(request("k-good", "GOODWILL")).points == 5
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
            # A writer that has stopped can write nothing more: health says so.
            wired.app.writer.stop()
            assert not watch_writer(wired.app, server_health[server])
            assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server_health.pop(server, None)
        server.stop(None)
