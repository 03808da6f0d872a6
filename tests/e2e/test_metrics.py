"""The Prometheus endpoint of a real server, scraped over HTTP before and after some calls."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc, query_pb2, query_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_the_calls(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    env.pop("LEDGER_METRICS_LISTEN", None)
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--metrics-listen", "127.0.0.1:0"])
    try:
        [port] = [
            json.loads(line)["port"] for line in running.log_path.read_text().splitlines()
            if line.startswith("{") and json.loads(line)["event"] == "metrics_serving"
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        before = scrape(url)
        assert value(before, "ledger_writer_alive") == 1.0
        assert [labels for (name, labels) in before if name == "ledger_build_info"] != []
        with running.channel() as channel:
            ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
            query = query_pb2_grpc.MemberQueryServiceStub(channel)
            for n in range(3):
                ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(
                    program_id="little_sprout", idempotency_key=f"enroll-metrics-{n}", member_id=f"m-metrics-{n}",
                ))  # fmt: skip
            ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(  # a retry: answered from the record, not written
                program_id="little_sprout", idempotency_key="enroll-metrics-0", member_id="m-metrics-0",
            ))  # fmt: skip
            with pytest.raises(grpc.RpcError) as caught:
                query.GetBalance(query_pb2.GetBalanceRequest(program_id="little_sprout", member_id="nobody"))
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        after = scrape(url)
    finally:
        stop_server(running.process)

    enroll = "LedgerService/EnrollMember"
    assert value(after, "ledger_rpc_requests_total", method=enroll, status="OK") == 4
    assert value(after, "ledger_rpc_duration_seconds_count", method=enroll) == 4
    assert value(after, "ledger_rpc_duration_seconds_sum", method=enroll) > 0
    balance = "MemberQueryService/GetBalance"
    assert value(after, "ledger_rpc_requests_total", method=balance, status="NOT_FOUND") == 1
    assert value(before, "ledger_rpc_requests_total", method=enroll, status="OK") == 0

    committed = value(after, "ledger_writer_groups_total", outcome="committed")
    assert committed - value(before, "ledger_writer_groups_total", outcome="committed") >= 3
    commands = value(after, "ledger_writer_group_commands_sum") - value(before, "ledger_writer_group_commands_sum")
    assert commands >= 3  # three enrolments written (the retry may or may not share a group)
    assert value(after, "ledger_writer_commit_seconds_count") == committed
    assert value(after, "ledger_store_errors_total") == 0
    assert ("ledger_writer_queue_depth", ()) in after


def two_free_ports() -> int:
    """A port P such that P and P+1 are both free now."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two adjacent free ports")


def test_with_processes_each_serves_its_own_numbers_on_the_next_port(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    env.pop("LEDGER_METRICS_LISTEN", None)
    port = two_free_ports()
    running = start_server(
        tmp_path, env=env, cwd=ROOT, extra_args=["--processes", "2", "--metrics-listen", f"127.0.0.1:{port}"]
    )
    calls = 12
    try:
        for n in range(calls):  # a channel (connection) each, so the kernel spreads them over both processes
            with running.channel() as channel:
                ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember(ledger_pb2.EnrollMemberRequest(
                    program_id="little_sprout", idempotency_key=f"enroll-procs-{n}", member_id=f"m-procs-{n}",
                ))  # fmt: skip
        scraped = [scrape(f"http://127.0.0.1:{p}/metrics") for p in (port, port + 1)]
    finally:
        stop_server(running.process)
    assert all(value(s, "ledger_writer_alive") == 1.0 for s in scraped)
    counts = [value(s, "ledger_rpc_requests_total", method="LedgerService/EnrollMember", status="OK") for s in scraped]
    assert sum(counts) == calls, counts
