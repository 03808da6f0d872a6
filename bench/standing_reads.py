"""GetTierState, ListEntitlements and LookupMember under a write load: from the read models, and from the writer.

Run as ``python -m bench.standing_reads [--rate N] [--seconds S] [--writers N]`` (about a minute). On a fresh
SQLite store (durable, ``synchronous=FULL``) with 200 members, each with a few purchases and half of them with a
paid plan and its entitlements, ``--writers`` threads record purchases without pause while one thread calls one
of the three query servicer methods directly (no network, as ``bench.cost_split``), paced at ``--rate`` calls a
second, in two modes:

* **read models**: as served (the ``standing`` row, the writer only when something is due);
* **writer**: the same calls with the read models' standing switched off, so every answer is the writer's
  state (``Peek``), as before the ``standing`` table: what each query cost then.

The read-model mode runs again after the writer mode: the store grows while the writers run, so any drift
shows between its first and last rows. For each mode and query it prints the wall-clock latency (p50, p99, in ms), the writer trips per query (the
``Peek`` requests counted at the writer) and the purchases written meanwhile per second (the same query load
in both modes, so the write rates compare). With ``--out`` the figures replace the section between
``<!-- standing-reads -->`` markers of that file (added at its end if it has none; ``make bench`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import sections
from bench.cost_split import _Context, _purchase
from ledger.application.writer import Peek
from ledger.bootstrap import Settings, Wired, build
from ledger.domain import commands as cmd
from ledger.entrypoints.grpc.ledger_service import LedgerService
from ledger.entrypoints.grpc.query_service import MemberQueryService
from loyalty.v1 import common_pb2, query_pb2

PROGRAM = "little_sprout"
MEMBERS = 200
BEGIN, END = "<!-- standing-reads -->", "<!-- /standing-reads -->"


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
    wired: Wired,
    trips: _Trips,
    writers: int,
    rate: int,
    seconds: float,
    name: str,
    one: Callable[[int], object],
) -> tuple[str, float, float, float, float]:
    """``(name, p50 ms, p99 ms, writer trips per query, purchases per second)``: ``one(i)`` called ``rate`` times a
    second for ``seconds`` while the writers record purchases without pause."""
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
    time.sleep(0.5)
    before_trips, before_written, began = trips.peeks, sum(written), time.perf_counter()
    latencies: list[float] = []
    i = 0
    while (elapsed := time.perf_counter() - began) < seconds:
        if elapsed < i / rate:
            time.sleep(i / rate - elapsed)
        start = time.perf_counter()
        one(i)
        latencies.append(1e3 * (time.perf_counter() - start))
        i += 1
    took = time.perf_counter() - began
    per_query = (trips.peeks - before_trips) / len(latencies)
    purchases = (sum(written) - before_written) / took
    stop.set()
    for t in threads:
        t.join()
    latencies.sort()
    return (
        name,
        statistics.median(latencies),
        latencies[int(0.99 * (len(latencies) - 1))],
        per_query,
        purchases,
    )


def run(rate: int, seconds: float, writers: int) -> list[tuple[str, float, float, float, float]]:
    """Every query in both modes (read models, writer, read models again), in that order."""
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
        # Read models again last: the store grows as the writers run, so a drift shows between the first and last.
        for mode in ("read models", "writer", "read models"):
            if mode == "writer":
                app._standing_now = app._member_now = None
            else:
                app._standing_now, app._member_now = served
            for name, one in calls:
                rows.append(_measure(wired, trips, writers, rate, seconds, f"{name}, {mode}", one))
    finally:
        wired.app.close()
    return rows


Row = tuple[str, float, float, float, float]


def report(rows: list[Row], rate: int, seconds: float, writers: int) -> str:
    load = os.getloadavg()[0]
    lines = [
        BEGIN,
        "## Tier state, entitlements and look-up under a write load",
        "",
        f"`python -m bench.standing_reads --rate {rate} --seconds {seconds:g} --writers {writers}`, "
        f"{platform.machine()} with {os.cpu_count()} CPUs (load average {load:.1f} at the end): {writers} threads "
        f"record purchases without pause while one thread calls the query, {rate} calls/s for {seconds:g} s per row; "
        f"the servicer methods in process on an embedded SQLite store (`synchronous=FULL`), {MEMBERS} members. "
        '"writer": the same calls with the `standing` read model switched off, as every such call was answered '
        "before it (a `Peek` through the writer thread). The store grows while the writers run, so the read-model "
        "rows are measured again last: compare the write rates of the writer rows with those.",
        "",
        "| query, answered by | p50 ms | p99 ms | writer trips per query | purchases/s meanwhile |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {p50:.2f} | {p99:.2f} | {trips:.2f} | {rate_:,.0f} |" for n, p50, p99, trips, rate_ in rows
    ]
    lines.append(END)
    return "\n".join(lines)


def kept_section(path: Path) -> str:
    """This section of ``path`` with a blank line before it, or "" (for bench/run.py, which rewrites the rest)."""
    return sections.kept(path, BEGIN, END)


def write_section(path: Path, section: str) -> None:
    sections.write(path, section, BEGIN, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=100, help="queries per second, from one thread")
    parser.add_argument("--seconds", type=float, default=4.0, help="per row")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--out", help="replace this section of the file (e.g. BENCHMARKS.md)")
    args = parser.parse_args()
    print(
        f"{args.writers} writer threads recording purchases; queries paced at {args.rate}/s from one thread, "
        f"{args.seconds:g} s per row"
    )
    print(f"{'query, answered by':40} {'p50 ms':>8} {'p99 ms':>8} {'trips/query':>12} {'purchases/s':>12}")
    rows = run(args.rate, args.seconds, args.writers)
    for name, p50, p99, per_query, purchases in rows:
        print(f"{name:40} {p50:8.2f} {p99:8.2f} {per_query:12.2f} {purchases:12.0f}")
    if args.out:
        write_section(Path(args.out), report(rows, args.rate, args.seconds, args.writers))


if __name__ == "__main__":
    main()
