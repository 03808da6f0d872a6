"""Traces from a real ``ledger serve`` to a collector over OTLP/gRPC, as an operator turns them on: the spans
of the calls arrive (at the latest when SIGTERM flushes the batch), named for the service; asked for without
the extra, the server refuses to start and says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc

pytestmark = pytest.mark.e2e

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
MEMBER = "member-5e1f0c"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(None)


def test_spans_reach_the_collector_and_shutdown_flushes_them(
    tmp_path: Path, collector: tuple[Collector, int]
) -> None:
    servicer, port = collector
    env = dict(os.environ)
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="600000",  # ten minutes: only the flush on shutdown sends them
    )
    env.pop("OTEL_SERVICE_NAME", None)
    running = start_server(tmp_path, env=env)
    try:
        with running.channel() as channel:
            program_pb2_grpc.ProgramServiceStub(channel).GetClock(
                program_pb2.GetClockRequest(program_id="little_sprout"),
                metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),),
                timeout=10,
            )
            ledger_pb2_grpc.LedgerServiceStub(
                channel
            ).EnrollMember(  # no traceparent: the server starts the trace
                ledger_pb2.EnrollMemberRequest(
                    program_id="little_sprout", idempotency_key="e-1", member_id=MEMBER
                ),
                timeout=10,
            )
    finally:
        stop_server(running.process)
    assert running.process.returncode == 0

    spans = [
        (resource.resource, span)
        for request in servicer.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    (resource, span), *_ = [(r, s) for r, s in spans if s.name == "ProgramService/GetClock"]
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["loyalty.program_id"].string_value == "little_sprout"
    assert attributes["rpc.grpc.status_code"].int_value == 0
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "loyalty-ledger"

    # the write: its wait for the writer, and under it the group's phases, on SQLite the projection in the append
    named = {s.name: s for _, s in spans if s.trace_id != bytes.fromhex(TRACE_ID)}
    call, wait = named["LedgerService/EnrollMember"], named["ledger.writer.wait"]
    decide, append = named["ledger.writer.decide"], named["ledger.store.append"]
    project = named["ledger.projection.write"]
    assert wait.parent_span_id == call.span_id
    assert decide.parent_span_id == wait.span_id and append.parent_span_id == wait.span_id
    assert project.parent_span_id == append.span_id
    assert decide.end_time_unix_nano <= append.start_time_unix_nano <= project.start_time_unix_nano
    assert MEMBER.encode() not in b"".join(s.SerializeToString() for _, s in spans)
    # the access line of each call carries its trace id, the one the server started as well
    lines = [json.loads(line) for line in running.log_path.read_text().splitlines() if line.startswith("{")]
    access = {line["method"]: line for line in lines if line.get("event") == "rpc"}
    assert access["ProgramService/GetClock"]["trace_id"] == TRACE_ID
    assert access["LedgerService/EnrollMember"]["trace_id"] == call.trace_id.hex()


def test_traces_asked_for_without_the_extra_stop_the_server_with_the_reason(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "opentelemetry" / "sdk"  # an installation without the SDK
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no opentelemetry-sdk here')\n")
    env = dict(os.environ)
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
        PYTHONPATH=os.pathsep.join([str(tmp_path / "shadow"), *filter(None, [env.get("PYTHONPATH")])]),
        LEDGER_SANDBOX="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--store", "memory://", "serve", "--listen", "127.0.0.1:0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in done.stderr and "loyalty-ledger[otel]" in done.stderr
