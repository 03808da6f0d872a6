"""The Python client's retries against the real server, through a proxy on a real port that fails some calls.

The proxy answers UNAVAILABLE (or ABORTED, RESOURCE_EXHAUSTED) as its script says, or forwards the call to the
server and then loses the answer, as a dropped connection does. A write retried that way is applied once: every
attempt carries the same idempotency key. Sleep, jitter and the clock are injected: nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient
from ledger.entrypoints.grpc.rate_limit import limited_status
from loyalty.v1 import audit_pb2, ledger_pb2
from tests.e2e.conftest import Program

pytestmark = pytest.mark.e2e

LINES = [ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="wipes", quantity=1, paid_fen=5_000)]


class FlakyProxy(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Forwards every call to ``upstream`` unless the next step of ``script`` says otherwise."""

    def __init__(self, upstream: grpc.Channel) -> None:
        self.upstream = upstream
        self.script: list[str] = []
        self.calls: list[tuple[str, bytes]] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = str(details.method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((method, request))
            step = self.script.pop(0) if self.script else "forward"
            if step == "unavailable":
                context.abort(grpc.StatusCode.UNAVAILABLE, "the proxy is restarting")
            if step == "aborted":
                context.abort(grpc.StatusCode.ABORTED, "try again")
            if step == "exhausted":
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "no RetryInfo")
            if step == "rate_limited":
                context.abort_with_status(rpc_status.to_status(limited_status(0.25, "slow down")))
            metadata = tuple((k, v) for k, v in context.invocation_metadata() if k == "authorization")
            try:
                answer: bytes = self.upstream.unary_unary(method, None, None)(
                    request, metadata=metadata, timeout=context.time_remaining()
                )
            except grpc.RpcError as err:
                context.abort(err.code(), err.details() or "")
            if step == "lost":
                context.abort(grpc.StatusCode.UNAVAILABLE, "the connection dropped after the write")
            return answer

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def proxy(program: Program) -> Iterator[tuple[FlakyProxy, str]]:
    upstream = grpc.insecure_channel(program.server.target)
    handler = FlakyProxy(upstream)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield handler, f"127.0.0.1:{port}"
    finally:
        server.stop(None)
        upstream.close()


def _client(program: Program, target: str, slept: list[float], **options: Any) -> LoyaltyClient:
    return LoyaltyClient(
        target, program.program_id, api_key=program.server.api_key, sleep=slept.append, jitter=lambda: 0.5,
        **({"retries": 3, "backoff": 0.1, "timeout": 10.0} | options),
    )  # fmt: skip


def test_a_write_whose_answers_are_lost_is_applied_once(
    program: Program, proxy: tuple[FlakyProxy, str]
) -> None:
    handler, target = proxy
    slept: list[float] = []
    member = program.key("m")
    with _client(program, target, slept) as client:
        client.enroll(member)
        handler.calls.clear()
        handler.script[:] = ["unavailable", "lost"]
        bought = client.record_purchase(member, program.key("order"), LINES, order_total_fen=5_000)
        assert client.attempts == 3
        assert slept == [pytest.approx(0.05), pytest.approx(0.1)]  # full jitter: 0.5 x 0.1 x 2**n
        sent = [ledger_pb2.RecordPurchaseRequest.FromString(body) for _, body in handler.calls]
        assert len(sent) == 3 and len({r.idempotency_key for r in sent}) == 1 and sent[0].idempotency_key
    pages = program.server.audit.ReplayMember(
        audit_pb2.ReplayMemberRequest(program_id=program.program_id, member_id=member)
    )
    assert [e.event_type for page in pages for e in page.events].count("PurchaseRecorded") == 1
    assert bought.points_earned > 0


def test_reads_are_retried_on_aborted_and_rate_limits_only_with_retry_info(
    program: Program, proxy: tuple[FlakyProxy, str]
) -> None:
    handler, target = proxy
    slept: list[float] = []
    member = program.key("m")
    with _client(program, target, slept) as client:
        client.enroll(member)
        handler.script[:] = ["aborted"]
        client.get_balance(member)
        assert client.attempts == 2
        handler.script[:] = ["rate_limited"]
        client.get_balance(member)
        assert client.attempts == 2 and slept[-1] == pytest.approx(0.25)  # at least what RetryInfo asks
        handler.script[:] = ["exhausted"]
        with pytest.raises(LedgerRefusal) as refused:
            client.get_balance(member)
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and client.attempts == 1


def test_attempts_are_bounded(program: Program, proxy: tuple[FlakyProxy, str]) -> None:
    handler, target = proxy
    slept: list[float] = []
    with _client(program, target, slept, retries=2) as client:
        handler.script[:] = ["unavailable"] * 5
        with pytest.raises(LedgerRefusal) as refused:
            client.enroll(program.key("m"))
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert client.attempts == 3 and len(handler.calls) == 3 and len(slept) == 2


def test_no_retry_past_the_calls_deadline(program: Program, proxy: tuple[FlakyProxy, str]) -> None:
    handler, target = proxy
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    client = LoyaltyClient(
        target, program.program_id, api_key=program.server.api_key, retries=10, backoff=0.4, timeout=1.0,
        sleep=sleep, jitter=lambda: 0.999, clock=lambda: now[0],
    )  # fmt: skip
    with client:
        handler.script[:] = ["unavailable"] * 10
        with pytest.raises(LedgerRefusal):
            client.get_balance(program.key("m"))
    # 0.4 s waited, 0.6 s left: the next delay (0.8 s) would end past the deadline, so no third attempt.
    assert client.attempts == 2 and slept == [pytest.approx(0.3996)]
