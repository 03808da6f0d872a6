"""200 slow-reading ReplayMember streams over a long member history must not starve health checks or a checkout.

A real server (authentication on, SQLite) gets one member with a history of several replay pages; 200 replays are
opened and never read, so every admitted stream blocks its worker on flow control. Health Check and a
RecordPurchase must still answer within a bound (measured by a monotonic clock: a correctness bound, not a
performance target), and the streams beyond the limit are refused at once with RESOURCE_EXHAUSTED and RetryInfo.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from loyalty.v1 import audit_pb2, audit_pb2_grpc, ledger_pb2_grpc
from tests.robustness.helpers import (
    SERVING,
    code_of,
    create_program,
    enroll,
    health_status,
    poll,
    purchase,
    retry_info,
    running,
    timed,
)

pytestmark = pytest.mark.e2e

PROGRAM = "slow_streams"
STREAMS = 200
SAMPLES = 5
HEALTH_BOUND = 0.75
PURCHASE_BOUND = 1.0


def test_slow_replays_do_not_starve_health_or_checkout(tmp_path: Path) -> None:
    # One key opens every stream: the per-key limit is lifted so that the limit in all is what is tested here.
    with running(tmp_path, env={"LEDGER_MAX_STREAMS_PER_KEY": "1000"}) as server:
        channel = server.channel()
        create_program(channel, PROGRAM)
        enroll(channel, PROGRAM, "big")
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        with ThreadPoolExecutor(8) as pool:  # 120 sales of 200 lines: a history of several 1 MiB replay pages
            list(pool.map(lambda n: ledger.RecordPurchase(purchase(PROGRAM, "big", f"h{n}", lines=200)), range(120)))
        channels = [server.channel() for _ in range(4)]
        calls: list[Any] = []  # the calls are also grpc.Future and grpc.RpcError
        try:
            for n in range(STREAMS):
                audit = audit_pb2_grpc.AuditServiceStub(channels[n % len(channels)])
                calls.append(audit.ReplayMember(audit_pb2.ReplayMemberRequest(program_id=PROGRAM, member_id="big")))
            # Never read: every admitted stream holds its worker until cancelled. The health check and the sale
            # are sent after all 200 streams were started, so they arrive behind them.

            def refused() -> list[Any]:
                return [c for c in calls if c.done() and c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]

            health_seconds: list[float] = []
            purchase_seconds: list[float] = []
            for n in range(SAMPLES):  # while the admitted streams build their pages
                status, seconds = timed(lambda: health_status(channel, timeout=10))
                assert status == SERVING
                health_seconds.append(seconds)
                bought, seconds = timed(lambda: ledger.RecordPurchase(purchase(PROGRAM, "big", f"d{n}"), timeout=10))  # noqa: B023
                assert code_of(bought) == grpc.StatusCode.OK
                purchase_seconds.append(seconds)
            print(f"health max {max(health_seconds):.3f} s, RecordPurchase max {max(purchase_seconds):.3f} s")
            assert max(health_seconds) < HEALTH_BOUND
            assert max(purchase_seconds) < PURCHASE_BOUND
            # Most streams were refused at once (an admitted stream that has sent all its pages frees its slot, so
            # not exactly all but the limit); none ended any other way.
            poll(lambda: len(refused()) >= STREAMS // 2, within=30, message="the streams beyond the limit refused")
            ended = {c.code() for c in calls if c.done()}
            assert ended <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OK}, ended
            retry, info = retry_info(refused()[0])
            assert retry is not None and retry.retry_delay.ToMilliseconds() > 0
            assert info is not None and info.reason == "TOO_MANY_STREAMS"
        finally:
            for c in calls:
                c.cancel()
            for ch in channels:
                ch.close()
            channel.close()
