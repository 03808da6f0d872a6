"""Traces, in process over gRPC with authentication on: every ``loyalty.v1`` call is one SERVER span that
continues the caller's W3C trace, names the program and never a member; only a server fault is ERROR; an
unknown method has no span; with traces off there is no tracing layer and OpenTelemetry is not imported."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from clients.python.loyalty_client import keyed_channel
from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.entrypoints import traces
from ledger.entrypoints.grpc.auth import Authenticator
from ledger.entrypoints.grpc.server import build_server, server_health
from ledger.entrypoints.grpc.tracing import Tracing
from ledger.testing.postgres import fresh_schema, require_postgres
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc, query_pb2, query_pb2_grpc

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "tracing"
OPERATOR = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
MEMBER = "member-7f3a9c"
PHONE = "+8613800138000"


class Served:
    def __init__(self, wired: Wired, exporter: InMemorySpanExporter, target: str) -> None:
        self.wired = wired
        self.exporter = exporter
        self.target = target
        self.channel = keyed_channel(target, wired.keys.issue(PROGRAM, "operator")[1])

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def calls(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind is SpanKind.SERVER]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with _serving(f"sqlite:///{tmp_path / 'ledger.db'}") as served:
        yield served


@contextmanager
def _serving(store_url: str) -> Iterator[Served]:
    wired = build(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))
    wired.app.create_program(PROGRAM, "Tracing", reference_document(), "test", START, "c")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # a span is exported as it ends
    tracing = Tracing(provider.get_tracer("test"))
    wired.app.writer.on_wait = tracing.writer_wait  # as ledger serve does with traces on
    server, port = build_server(
        wired.app, "127.0.0.1:0", max_workers=8, interceptors=[tracing, Authenticator(wired.keys)]
    )
    server.start()
    served = Served(wired, exporter, f"127.0.0.1:{port}")
    try:
        yield served
    finally:
        served.channel.close()
        server_health.pop(server, None)
        server.stop(None)
        provider.shutdown()
        wired.app.close()


def _enroll(served: Served, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    ledger_pb2_grpc.LedgerServiceStub(served.channel).EnrollMember(
        ledger_pb2.EnrollMemberRequest(
            program_id=PROGRAM, idempotency_key="enroll-1", context=OPERATOR, member_id=MEMBER,
            identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="6222000011112222")],
            profile=ledger_pb2.PersonalProfile(consent=True, phone=PHONE),
        ),
        metadata=metadata, timeout=10,
    )  # fmt: skip


def _balance_code(served: Served, program_id: str, member_id: str) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        query_pb2_grpc.MemberQueryServiceStub(served.channel).GetBalance(
            query_pb2.GetBalanceRequest(program_id=program_id, member_id=member_id), timeout=10
        )
    code: grpc.StatusCode = raised.value.code()
    return code


def test_a_call_is_a_server_span_in_the_callers_trace_naming_the_program_and_no_member(
    served: Served,
) -> None:
    _enroll(served, (("traceparent", TRACEPARENT), ("tracestate", "vendor=abc")))

    (span,) = served.calls()
    assert span.name == "LedgerService/EnrollMember"
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert span.context.trace_state.get("vendor") == "abc"
    assert dict(span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "loyalty.v1.LedgerService",
        "rpc.method": "EnrollMember",
        "rpc.grpc.status_code": 0,
        "loyalty.program_id": PROGRAM,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events
    everything = repr(span.to_json())
    assert MEMBER not in everything and PHONE not in everything and "6222000011112222" not in everything


def test_a_write_has_a_child_span_for_its_wait_for_the_writer_the_ledgers_own_writes_none(
    served: Served,
) -> None:
    served.wired.app.enroll(PROGRAM, "m-own", [], None, "e-own")  # not a call: no span at all
    assert served.spans() == []

    _enroll(served, (("traceparent", TRACEPARENT),))

    (wait,) = [span for span in served.spans() if span.name == "ledger.writer.wait"]
    (call,) = served.calls()
    assert call.name == "LedgerService/EnrollMember"
    assert wait.name == "ledger.writer.wait" and wait.kind is SpanKind.INTERNAL
    assert wait.context.trace_id == call.context.trace_id
    assert wait.parent is not None and wait.parent.span_id == call.context.span_id
    assert dict(wait.attributes or {}) == {"ledger.writer.requests": 1, "ledger.writer.queued": 0}


def test_a_call_without_traceparent_starts_a_trace_of_its_own(served: Served) -> None:
    _enroll(served)

    (span,) = served.calls()
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != TRACE_ID


def test_a_callers_mistake_is_not_an_error_a_server_fault_is(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _balance_code(served, PROGRAM, "nobody") is grpc.StatusCode.NOT_FOUND
    assert _balance_code(served, PROGRAM, "x" * 200) is grpc.StatusCode.INVALID_ARGUMENT

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(served.wired.app, "balance", broken)
    assert _balance_code(served, PROGRAM, "nobody") is grpc.StatusCode.INTERNAL

    not_found, invalid, fault = served.calls()
    assert [s.name for s in (not_found, invalid, fault)] == ["MemberQueryService/GetBalance"] * 3
    assert not_found.attributes is not None and not_found.attributes["rpc.grpc.status_code"] == 5
    assert not_found.status.status_code is StatusCode.UNSET
    assert invalid.attributes is not None and invalid.attributes["rpc.grpc.status_code"] == 3
    assert invalid.status.status_code is StatusCode.UNSET
    assert "x" * 200 not in repr(invalid.to_json())
    assert fault.attributes is not None and fault.attributes["rpc.grpc.status_code"] == 13
    assert fault.status.status_code is StatusCode.ERROR
    assert "fire" not in repr(fault.to_json())  # no error message in a span


def test_an_unknown_method_and_a_health_check_have_no_span(served: Served) -> None:
    unknown = served.channel.unary_unary(
        "/loyalty.v1.LedgerService/NoSuchMethod", request_serializer=bytes, response_deserializer=bytes
    )
    with pytest.raises(grpc.RpcError) as raised:
        unknown(b"", timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
    with grpc.insecure_channel(served.target) as plain:
        health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=10)

    assert served.spans() == []


def test_traces_are_off_without_an_endpoint_and_then_nothing_imports_opentelemetry() -> None:
    script = (
        "import sys\n"
        "import ledger.entrypoints.cli, ledger.entrypoints.grpc.server\n"
        "from ledger.entrypoints import traces\n"
        "assert traces.start({'OTEL_SERVICE_NAME': 'x', 'OTEL_EXPORTER_OTLP_ENDPOINT': ' '}) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_an_endpoint_turns_traces_on_with_the_layer() -> None:
    started = traces.start({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert started is not None
    try:
        assert isinstance(started.layer, Tracing)
    finally:
        started.stop()


def test_traces_asked_for_without_the_extra_exit_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed

    with pytest.raises(SystemExit) as exited:
        traces.start({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"})
    message = str(exited.value.code)
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in message and "loyalty-ledger[otel]" in message


def test_an_import_stream_is_a_server_span_without_the_rows(served: Served) -> None:
    from loyalty.v1 import import_pb2, import_pb2_grpc

    row = import_pb2.ImportRow(
        row=2, member_id=MEMBER,
        identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="6222000011112222")],
    )  # fmt: skip
    message = import_pb2.ImportMembersRequest(program_id=PROGRAM, source="old.csv", rows=[row])
    answer = import_pb2_grpc.ImportServiceStub(served.channel).ImportMembers(
        iter([message]), metadata=(("traceparent", TRACEPARENT),), timeout=10
    )
    assert answer.imported == 1
    (call,) = served.calls()
    assert call.name == "ImportService/ImportMembers" and format(call.context.trace_id, "032x") == TRACE_ID
    assert dict(call.attributes or {})["rpc.grpc.status_code"] == 0
    everything = repr([span.to_json() for span in served.spans()])
    assert MEMBER not in everything and "6222000011112222" not in everything


def _until(condition: Any, seconds: float = 10.0) -> None:
    """Wait for other threads to reach a point (not for time to pass); fail rather than hang."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the threads never got there"
        time.sleep(0.002)


def _purchase(served: Served, key: str, order_id: str, api_key: str | None = None) -> None:
    with keyed_channel(served.target, api_key or served.wired.keys.issue(PROGRAM, "pos")[1]) as channel:
        ledger_pb2_grpc.LedgerServiceStub(channel).RecordPurchase(
            ledger_pb2.RecordPurchaseRequest(
                program_id=PROGRAM, idempotency_key=key, member_id=MEMBER, order_id=order_id,
                context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1"),
                lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="wipes", quantity=1,
                                            paid_fen=12_345)],
            ),
            timeout=10,
        )  # fmt: skip


@contextmanager
def _store(tmp_path: Path, backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with fresh_schema(require_postgres()) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'ledger.db'}" if backend == "sqlite" else "memory://"


@pytest.mark.parametrize("backend", ["sqlite", "memory", "postgresql"])
def test_a_purchase_has_spans_for_deciding_appending_and_projecting_under_its_wait(
    tmp_path: Path, backend: str
) -> None:
    with _store(tmp_path, backend) as store_url, _serving(store_url) as served:
        _enroll(served)
        served.exporter.clear()
        _purchase(served, "buy-1", "O-1")
        spans = served.spans()

    by_name = {span.name: span for span in spans}
    assert sorted(by_name) == sorted([
        "LedgerService/RecordPurchase", "ledger.writer.wait", "ledger.writer.decide", "ledger.store.append",
        "ledger.projection.write",
    ])  # fmt: skip
    call, wait = by_name["LedgerService/RecordPurchase"], by_name["ledger.writer.wait"]
    decide, append, project = (by_name[n] for n in ("ledger.writer.decide", "ledger.store.append",
                                                    "ledger.projection.write"))  # fmt: skip
    assert wait.parent is not None and wait.parent.span_id == call.context.span_id
    assert decide.parent is not None and decide.parent.span_id == wait.context.span_id
    assert append.parent is not None and append.parent.span_id == wait.context.span_id
    assert {span.context.trace_id for span in spans} == {call.context.trace_id}

    def times(span: ReadableSpan) -> tuple[int, int]:
        assert span.start_time is not None and span.end_time is not None
        return span.start_time, span.end_time

    (call_from, call_to), (wait_from, wait_to) = times(call), times(wait)
    (decide_from, decide_to), (append_from, append_to) = times(decide), times(append)
    project_from, project_to = times(project)
    assert (
        call_from <= wait_from <= decide_from <= decide_to <= append_from <= append_to <= wait_to <= call_to
    )
    assert project_from <= project_to
    if backend != "memory":  # in the append's transaction: inside it, its child
        assert project.parent is not None and project.parent.span_id == append.context.span_id
        assert append_from <= project_from and project_to <= append_to
    else:  # memory:// shares no transaction with the read models: projected after the commit, before the answer
        assert project.parent is not None and project.parent.span_id == wait.context.span_id
        assert append_to <= project_from and project_to <= wait_to
    for span in (decide, append, project):
        assert span.kind is SpanKind.INTERNAL
        assert dict(span.attributes or {}) == {"ledger.writer.group_size": 1, "ledger.writer.attempt": 1}
    everything = repr([span.to_json() for span in spans])
    assert MEMBER not in everything and "O-1" not in everything and "12345" not in everything


def test_a_group_serving_several_calls_gives_each_calls_wait_the_groups_phases(served: Served) -> None:
    _enroll(served)
    served.exporter.clear()
    writer = served.wired.app.writer
    keys = [served.wired.keys.issue(PROGRAM, "pos")[1] for _ in range(2)]
    # The writer takes a first group (the ledger's own write, no span) and waits for its lock; meanwhile both
    # purchases queue, and the writer then takes them as one group.
    with writer.lock:
        blocker = threading.Thread(target=served.wired.app.enroll, args=(PROGRAM, "m-own", [], None, "e-own"))
        blocker.start()
        _until(lambda: writer.queued == 0 and blocker.is_alive())
        time.sleep(
            0.05
        )  # the writer has taken the blocker's group (the queue is empty): let it reach the lock
        threads = [
            threading.Thread(target=_purchase, args=(served, f"buy-{n}", f"O-{n}", keys[n])) for n in range(2)
        ]
        for thread in threads:
            thread.start()
        _until(lambda: writer.queued == 2)
    for thread in [blocker, *threads]:
        thread.join(timeout=30)
    spans = served.spans()
    waits = [span for span in spans if span.name == "ledger.writer.wait"]
    assert len(waits) == 2
    for wait in waits:
        (decide,) = [s for s in spans if s.name == "ledger.writer.decide" and s.parent and
                     s.parent.span_id == wait.context.span_id]  # fmt: skip
        (append,) = [s for s in spans if s.name == "ledger.store.append" and s.parent and
                     s.parent.span_id == wait.context.span_id]  # fmt: skip
        assert decide.context.trace_id == wait.context.trace_id
        assert (decide.attributes or {})["ledger.writer.group_size"] == 2
        assert (append.attributes or {})["ledger.writer.group_size"] == 2
    appends = [s for s in spans if s.name == "ledger.store.append"]
    assert len({(s.start_time, s.end_time) for s in appends}) == 1  # one group: the same times in both traces
    assert len({s.context.trace_id for s in appends}) == 2


def test_a_read_the_writer_answers_has_a_decide_span_and_nothing_written(served: Served) -> None:
    _enroll(served)
    served.exporter.clear()
    queries = query_pb2_grpc.MemberQueryServiceStub(served.channel)
    queries.ListRewards(query_pb2.ListRewardsRequest(program_id=PROGRAM, member_id=MEMBER), timeout=10)
    names = sorted(span.name for span in served.spans())
    assert names == ["MemberQueryService/ListRewards", "ledger.writer.decide", "ledger.writer.wait"]
    # the tier state and the exchanges come from the read models while nothing is due for the member: no trip
    # through the writer
    served.exporter.clear()
    queries.GetTierState(query_pb2.GetTierStateRequest(program_id=PROGRAM, member_id=MEMBER), timeout=10)
    assert [span.name for span in served.spans()] == ["MemberQueryService/GetTierState"]
    served.exporter.clear()
    queries.ListExchanges(query_pb2.ListExchangesRequest(program_id=PROGRAM, member_id=MEMBER), timeout=10)
    assert [span.name for span in served.spans()] == ["MemberQueryService/ListExchanges"]
