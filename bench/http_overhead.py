"""What one call costs over JSON/HTTP beside the same call over gRPC: the latency of single calls, one after the
other, on one server.

Run as ``python -m bench.http_overhead [--calls N] [--rounds R]``. One ``ledger serve --http-listen`` on a
temporary SQLite file with API keys; one client in this process, one connection per transport (gRPC: a channel;
HTTP: a kept-alive ``http.client`` connection, JSON bodies). Each round makes N ``GetBalance`` and N
``EnrollMember`` calls over each transport, alternating the transports call by call so both see the same
server; the medians and 99th percentiles of all rounds are printed (milliseconds) with the HTTP call's extra
time. Nothing is written to a file.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ledger.testing.server import start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc, query_pb2, query_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "little_sprout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls of each kind per transport and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
    env.pop("LEDGER_STORE", None)
    with tempfile.TemporaryDirectory(prefix="ledger-http-bench-") as tmp:
        running = start_server(Path(tmp), env=env, cwd=ROOT, http=True)
        try:
            assert running.http_url is not None
            host, port = running.http_url.removeprefix("http://").split(":")
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {running.api_key}"}
            ids = itertools.count(1)

            def over_http(path: str, body: dict[str, str]) -> None:
                connection.request(
                    "POST", path, json.dumps(body).encode(), headers=headers
                )  # bytes: one send
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 200, reply.status

            with running.channel() as channel:
                ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
                query = query_pb2_grpc.MemberQueryServiceStub(channel)
                ledger.EnrollMember(
                    ledger_pb2.EnrollMemberRequest(program_id=PROGRAM, idempotency_key="b", member_id="b")
                )
                balance = query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id="b")

                def grpc_enrol() -> None:
                    member = f"g-{next(ids)}"
                    ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(
                        program_id=PROGRAM, idempotency_key=member, member_id=member), timeout=10)  # fmt: skip

                def http_enrol() -> None:
                    member = f"h-{next(ids)}"
                    over_http("/loyalty.v1.LedgerService/EnrollMember",
                              {"programId": PROGRAM, "idempotencyKey": member, "memberId": member})  # fmt: skip

                cases: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
                    "GetBalance": (
                        lambda: query.GetBalance(balance, timeout=10),
                        lambda: over_http(
                            "/loyalty.v1.MemberQueryService/GetBalance",
                            {"programId": PROGRAM, "memberId": "b"},
                        ),
                    ),
                    "EnrollMember": (grpc_enrol, http_enrol),
                }
                for name, (grpc_call, http_call) in cases.items():
                    for call in (grpc_call, http_call):  # warm up
                        for _ in range(50):
                            call()
                    timings: dict[str, list[float]] = {"grpc": [], "http": []}
                    for _ in range(args.rounds):
                        for _ in range(args.calls):
                            for transport, call in (("grpc", grpc_call), ("http", http_call)):
                                start = time.perf_counter()
                                call()
                                timings[transport].append((time.perf_counter() - start) * 1000)
                    g, h = (statistics.median(timings[t]) for t in ("grpc", "http"))
                    p99 = {t: statistics.quantiles(v, n=100)[98] for t, v in timings.items()}
                    print(f"{name:13} calls {len(timings['grpc']):5} each | median gRPC {g:.3f} ms, HTTP {h:.3f} ms,"
                          f" +{h - g:.3f} ms | p99 gRPC {p99['grpc']:.3f} ms, HTTP {p99['http']:.3f} ms")  # fmt: skip
            connection.close()
        finally:
            stop_server(running.process)


if __name__ == "__main__":
    main()
