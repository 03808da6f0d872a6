"""Where a call's CPU goes: the ledger's own work per call in process, beside what gRPC itself costs.

Run as ``python -m bench.cost_split [--calls N]`` (about a minute). Three measurements, CPU time of this process
(``time.process_time``), medians of three rounds:

* **Handlers in process, one thread**: the ``GetBalance`` and ``RecordPurchase`` servicer methods called directly
  with a stand-in call context (no network, no grpc, no interceptors) on a fresh SQLite store, durable
  (``synchronous=FULL``) and with ``synchronous=OFF`` (the same work without the fsync). One thread, so every
  write is a group of one: the writer's per-group cost (the transaction's statements) is all on that command.
* **The same writes from 32 threads**: the writer groups what is waiting, so the per-group cost is shared.
* **gRPC alone**: a generic-handler echo server in a child process, sync (thread pools of 64 and 8) and
  ``grpc.aio``, its own CPU time per call under 2 client processes x 16 threads.

It prints a table; nothing is written. ``docs/performance.md`` quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from bench.run import POS, cpu_seconds, run_phase
from ledger.bootstrap import Settings, Wired, build
from ledger.entrypoints.grpc.ledger_service import LedgerService
from ledger.entrypoints.grpc.query_service import MemberQueryService
from loyalty.v1 import ledger_pb2, query_pb2

PROGRAM = "little_sprout"
MEMBERS = 200


class _Context:
    """What the servicers ask of a call's context, and nothing more."""

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(str(status))

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def set_trailing_metadata(self, metadata: Any) -> None:
        return None


def _wired(synchronous: str) -> Wired:
    folder = tempfile.mkdtemp(prefix="ledger-cost-")
    wired = build(Settings(store_url=f"sqlite:///{folder}/ledger.db", synchronous=synchronous))
    for i in range(MEMBERS):
        wired.app.enroll(PROGRAM, f"m{i}", [], None, f"enrol-{i}")
    return wired


def _purchase(i: int) -> ledger_pb2.RecordPurchaseRequest:
    return ledger_pb2.RecordPurchaseRequest(
        program_id=PROGRAM, idempotency_key=str(uuid.uuid4()), context=POS, member_id=f"m{i % MEMBERS}",
        order_id=f"O-{uuid.uuid4().hex[:12]}", order_total_fen=12_345,
        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-FORMULA-900G", category="infant_formula", quantity=1,
                                    paid_fen=12_345)],
    )  # fmt: skip


def _per_call(calls: int, threads: int, one: Callable[[int], object]) -> float:
    """CPU microseconds per call of ``one(i)`` for ``calls`` calls spread over ``threads`` threads."""
    per_thread = calls // threads

    def loop(t: int) -> None:
        for j in range(per_thread):
            one(t * per_thread + j)

    began = time.process_time()
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 1e6 * (time.process_time() - began) / (per_thread * threads)


def _store_rows(wired: Wired, synchronous: str, calls: int) -> list[tuple[str, float]]:
    context: Any = _Context()
    writes = LedgerService(wired.app)
    reads = MemberQueryService(wired.app)
    rows: list[tuple[str, float]] = []
    for threads in (1, 32):
        rounds = [_per_call(calls, threads, lambda i: writes.RecordPurchase(_purchase(i), context)) for _ in range(3)]
        rows.append((f"RecordPurchase servicer, synchronous={synchronous}, {threads} thread(s)", statistics.median(rounds)))
    balance = [query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=f"m{i}") for i in range(MEMBERS)]
    rounds = [_per_call(calls * 5, 1, lambda i: reads.GetBalance(balance[i % MEMBERS], context)) for _ in range(3)]
    rows.append((f"GetBalance servicer, synchronous={synchronous}, 1 thread", statistics.median(rounds)))
    return rows


def handlers(calls: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    for synchronous in ("FULL", "OFF"):
        wired = _wired(synchronous)
        try:
            rows += _store_rows(wired, synchronous, calls)
        finally:
            wired.app.close()
    return rows


def _sync_echo(ports: Any, stop: Any, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}),))  # fmt: skip
    ports.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    stop.wait()
    server.stop(1).wait()


def _aio_echo(ports: Any, stop: Any, workers: int) -> None:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def run() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),))  # fmt: skip
        ports.put(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await server.stop(1)

    asyncio.run(run())


def echoes(seconds: float) -> list[tuple[str, float]]:
    ctx = mp.get_context("spawn")
    rows: list[tuple[str, float]] = []
    for label, target, workers in (("sync, 64 threads", _sync_echo, 64), ("sync, 8 threads", _sync_echo, 8),
                                   ("grpc.aio", _aio_echo, 0)):  # fmt: skip
        rounds = []
        for _ in range(3):
            ports, stop = ctx.Queue(), ctx.Event()
            process = ctx.Process(target=target, args=(ports, stop, workers))
            process.start()
            try:
                port = ports.get(timeout=30)
                assert process.pid is not None
                before = cpu_seconds(process.pid)
                _, result = run_phase(ctx, "echo", [f"127.0.0.1:{port}"], 1, 2, 16, seconds)
                rounds.append(1e6 * (cpu_seconds(process.pid) - before) / max(result.ok, 1))
            finally:
                stop.set()
                process.join(30)
        rows.append((f"echo server CPU per call, {label}", statistics.median(rounds)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2_000, help="writes per round (default 2,000; reads: 5x)")
    p.add_argument("--seconds", type=float, default=5.0, help="each echo round (default 5)")
    args = p.parse_args(argv)
    rows = [*handlers(args.calls), *echoes(args.seconds)]
    width = max(len(label) for label, _ in rows)
    for label, us in rows:
        print(f"{label:<{width}}  {us:8,.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
