"""GetTierState, ListEntitlements and LookupMember under a write load: from the read models, and from the writer.

Run as ``python -m bench.standing_reads [--queries N] [--writers N]`` (under a minute). On a fresh SQLite store
(durable, ``synchronous=FULL``) with 200 members, each with a few purchases, a paid plan and its entitlements,
``--writers`` threads record purchases without pause while one thread calls the three query servicer methods
directly (no network, as ``bench.cost_split``), in two modes:

* **read models**: as served (the ``standing`` row, the writer only when something is due);
* **writer**: the same calls with the read models' standing switched off, so every answer is the writer's
  state (``Peek``), as before the ``standing`` table: what each query cost then.

For each mode and query it prints the wall-clock latency (p50, p99, in ms), the writer trips per query (the
``Peek`` requests counted at the writer) and the purchases written meanwhile per second. Nothing is written to
a file; ``BENCHMARKS.md`` quotes a run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.cost_split import _Context, _purchase
from ledger.application.writer import Peek
from ledger.bootstrap import Settings, Wired, build
from ledger.domain import commands as cmd
from ledger.entrypoints.grpc.ledger_service import LedgerService
from ledger.entrypoints.grpc.query_service import MemberQueryService
from loyalty.v1 import common_pb2, query_pb2

PROGRAM = "little_sprout"
MEMBERS = 200


def _wired() -> Wired:
    folder = tempfile.mkdtemp(prefix="ledger-standing-")
    wired = build(Settings(store_url=f"sqlite:///{folder}/ledger.db", synchronous="FULL"))
    context: Any = _Context()
    writes = LedgerService(wired.app)
    for i in range(MEMBERS):
        wired.app.enroll(PROGRAM, f"m{i}", [("card_number", f"C-{i}")], None, f"enrol-{i}")
    for round_ in range(3):
        for i in range(MEMBERS):
            writes.RecordPurchase(_purchase(i + round_ * MEMBERS), context)
    for i in range(0, MEMBERS, 2):
        wired.app.execute(
            cmd.Envelope(PROGRAM, cmd.PurchaseMembership(f"m{i}", f"MS-{i}", "black_gold", 199_00), f"ms-{i}")
        )
    return wired


class _Trips:
    def __init__(self, wired: Wired) -> None:
        self.peeks = 0
        execute = wired.app.writer.execute

        def counting(request: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(request, Peek):
                self.peeks += 1
            return execute(request, *args, **kwargs)

        wired.app.writer.execute = counting  # type: ignore[method-assign]


def _measure(
    wired: Wired, trips: _Trips, writers: int, queries: int, name: str, one: Callable[[int], object]
) -> tuple[str, float, float, float, float]:
    """``(name, p50 ms, p99 ms, writer trips per query, purchases per second)`` of ``queries`` calls of ``one``."""
    context: Any = _Context()
    writes = LedgerService(wired.app)
    stop = threading.Event()
    written = [0] * writers

    def write(t: int) -> None:
        while not stop.is_set():
            writes.RecordPurchase(_purchase(t * 7919 + written[t]), context)
            written[t] += 1

    threads = [threading.Thread(target=write, args=(t,), daemon=True) for t in range(writers)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    before_trips, before_written, began = trips.peeks, sum(written), time.perf_counter()
    latencies: list[float] = []
    for i in range(queries):
        start = time.perf_counter()
        one(i)
        latencies.append(1e3 * (time.perf_counter() - start))
    seconds = time.perf_counter() - began
    per_query = (trips.peeks - before_trips) / queries
    rate = (sum(written) - before_written) / seconds
    stop.set()
    for t in threads:
        t.join()
    latencies.sort()
    return name, statistics.median(latencies), latencies[int(0.99 * (len(latencies) - 1))], per_query, rate


def run(queries: int, writers: int) -> list[tuple[str, float, float, float, float]]:
    wired = _wired()
    trips = _Trips(wired)
    context: Any = _Context()
    reads = MemberQueryService(wired.app)
    tier = [query_pb2.GetTierStateRequest(program_id=PROGRAM, member_id=f"m{i}") for i in range(MEMBERS)]
    ents = [query_pb2.ListEntitlementsRequest(program_id=PROGRAM, member_id=f"m{i}") for i in range(MEMBERS)]
    look = [
        query_pb2.LookupMemberRequest(
            program_id=PROGRAM,
            identity=common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=f"C-{i}"),
        )
        for i in range(MEMBERS)
    ]
    calls: list[tuple[str, Callable[[int], object]]] = [
        ("GetTierState", lambda i: reads.GetTierState(tier[i % MEMBERS], context)),
        ("ListEntitlements", lambda i: reads.ListEntitlements(ents[i % MEMBERS], context)),
        ("LookupMember", lambda i: reads.LookupMember(look[i % MEMBERS], context)),
    ]
    rows = []
    app: Any = wired.app
    served = (app._standing_now, app._member_now)
    try:
        for mode in ("read models", "writer"):
            if mode == "writer":
                app._standing_now = app._member_now = None
            else:
                app._standing_now, app._member_now = served
            for name, one in calls:
                rows.append(_measure(wired, trips, writers, queries, f"{name}, {mode}", one))
    finally:
        wired.app.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    print(f"{args.writers} writer threads recording purchases; {args.queries} queries per row, one thread")
    print(f"{'query, answered by':40} {'p50 ms':>8} {'p99 ms':>8} {'trips/query':>12} {'purchases/s':>12}")
    for name, p50, p99, per_query, rate in run(args.queries, args.writers):
        print(f"{name:40} {p50:8.2f} {p99:8.2f} {per_query:12.2f} {rate:12.0f}")


if __name__ == "__main__":
    main()
