"""Replay of one long member stream and ``ledger rebuild-projections``, in process, on the embedded SQLite store.

Run as ``python -m bench.replay_rebuild [--replay-events N] [--rebuild-events M] [--repeats R] [--out FILE]``.

- **Replay**: one member is enrolled and gets ``N`` purchases, decided by the real write path on a SQLite file
  (``synchronous=OFF``: set-up, not measured). Timed: ``LedgerApp.replay`` of the whole stream
  (``ledger/application/audit.py``: read in chunks, decode, fold, balances and tier after each event) and
  ``verify_member`` (the hash chain, then the same fold), both without gRPC; and, to split the fold, decoding
  the stream's payloads alone (``events.decode``).
- **Rebuild**: a log decided by real commands (``bench.run.generate_template``: enrolments, credits, then the
  benchmark's write mix for random members) is copied ``--rebuild-copies`` times under new member ids
  (``bench.run.copy_events``), then ``rebuild_projections`` (what ``ledger rebuild-projections`` runs) is timed
  on the store opened with the default settings (``synchronous=FULL``); the rebuild can run again on the same
  store, so each repeat rebuilds the whole log. Also timed: decoding every member event of that log.

Each figure is the median of ``R`` runs in this process. With ``--out`` the figures replace the section between
``<!-- replay-rebuild -->`` markers of that file (added at its end the first time; ``make bench`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import sections
from bench.run import OPERATOR, POS, PROGRAM, SETUP_CREDIT, copy_events, generate_template
from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.bootstrap import Settings, build
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.streams import MEMBER_PREFIX, member_stream
from ledger.entrypoints.grpc.convert import actor_of
from ledger.entrypoints.rebuild import rebuild_projections
from policies import OrderLine

BEGIN, END = "<!-- replay-rebuild -->", "<!-- /replay-rebuild -->"
REPLAY_MEMBER = "replay-0001"
EVENTS_PER_MEMBER = 10


def median_of(repeats: int, run: Callable[[], Any]) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def write_long_member(url: str, events: int) -> None:
    """Enrol one member and record ``events`` - 1 purchases for it through the writer."""
    wired = build(Settings(store_url=url, synchronous="OFF"))
    app = wired.app
    pos, operator = actor_of(POS), actor_of(OPERATOR)
    try:
        app.writer.execute_many([
            cmd.Envelope(PROGRAM, cmd.EnrollMember(member_id=REPLAY_MEMBER, identities=()), "enroll", None, pos),
            cmd.Envelope(PROGRAM, cmd.AdjustPoints(member_id=REPLAY_MEMBER, points=SETUP_CREDIT, reason_code="GOODWILL",
                                                   note="bench setup", operator_id="bench"), "credit", None, operator),
        ], timeout=300)  # fmt: skip
        n = 2
        while n < events:
            batch = []
            for _ in range(min(500, events - n)):
                n += 1
                paid = 1_000 + (n * 7919) % 49_000
                line = OrderLine(line_id="1", sku="LS-FORMULA-900G", category="infant_formula", quantity=1,
                                 paid_fen=paid)  # fmt: skip
                batch.append(cmd.Envelope(PROGRAM, cmd.RecordPurchase(member_id=REPLAY_MEMBER, order_id=f"O-{n}",
                                                                      lines=(line,), order_total_fen=paid),
                                          f"k-{n}", None, pos))  # fmt: skip
            for result in app.writer.execute_many(batch, timeout=300):
                if isinstance(result, BaseException):
                    raise result
    finally:
        app.close()
        wired.backend.store.close()


def measure_replay(folder: Path, events: int, repeats: int) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'replay.db'}"
    write_long_member(url, events)
    wired = build(Settings(store_url=url))
    app = wired.app
    try:
        stream = member_stream(PROGRAM, REPLAY_MEMBER)
        count = wired.backend.store.stream_version(stream)
        payloads = [s.payload for s in wired.backend.store.read_stream(stream)]
        replay, replay_runs = median_of(repeats, lambda: sum(1 for _ in app.replay(PROGRAM, REPLAY_MEMBER)))
        verify, verify_runs = median_of(repeats, lambda: app.verify_member(PROGRAM, REPLAY_MEMBER))
        decode = ev.decode
        decoding, _ = median_of(repeats, lambda: [decode(p) for p in payloads])
        assert app.verify_member(PROGRAM, REPLAY_MEMBER).ok
    finally:
        app.close()
        wired.backend.store.close()
    return {"events": count, "replay": replay, "replay_runs": replay_runs, "verify": verify,
            "verify_runs": verify_runs, "decode": decoding}  # fmt: skip


def measure_rebuild(folder: Path, events: int, copies: int, repeats: int) -> dict[str, Any]:
    template_events = -(-events // copies)
    template = folder / "template.db"
    generate_template(str(template), max(1, template_events // EVENTS_PER_MEMBER), template_events, 7)
    url = f"sqlite:///{folder / 'rebuild.db'}"
    source = SqliteEventStore(str(template))
    target = SqliteEventStore(str(folder / "rebuild.db"), synchronous="OFF")
    try:
        loaded, _ = copy_events(source, target, copies)
    finally:
        source.close()
        target.close()
    wired = build(Settings(store_url=url))
    reports: list[dict[str, Any]] = []
    try:
        store = wired.backend.store
        payloads: list[bytes] = []
        position = 0
        while page := store.read_all(after_position=position, limit=20_000):
            payloads.extend(s.payload for s in page if s.stream_id.startswith(MEMBER_PREFIX))
            position = page[-1].position
        decode = ev.decode
        decoding, _ = median_of(repeats, lambda: [decode(p) for p in payloads])
        for _ in range(repeats):
            reports.append(rebuild_projections(wired.app, wired.backend))
    finally:
        wired.app.close()
        wired.backend.store.close()
    rates = [float(r["events_per_second"]) for r in reports]
    middle = sorted(reports, key=lambda r: float(r["events_per_second"]))[len(reports) // 2]
    return {"events": loaded, "members": int(middle["members"]), "rate": statistics.median(rates),
            "rates": rates, "summary": str(middle["summary"]), "decode_events": len(payloads),
            "decode": decoding}  # fmt: skip


def report(args: argparse.Namespace, replay: dict[str, Any] | None, rebuild: dict[str, Any] | None) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        BEGIN,
        "## Replay and rebuild in process (`bench.replay_rebuild`)",
        "",
        f"`python -m bench.replay_rebuild --replay-events {args.replay_events} --rebuild-events "
        f"{args.rebuild_events} --rebuild-copies {args.rebuild_copies} --repeats {args.repeats}`, "
        f"{platform.machine()} with {os.cpu_count()} CPUs; one process, embedded SQLite store, no gRPC; medians of "
        f"{args.repeats} runs (load average {load:.1f} at the end).",
        "",
        "| figure | measured | runs | target |",
        "|---|---|---|---|",
    ]
    if replay is not None:
        n = replay["events"]
        runs = ", ".join(f"{t * 1000:.0f}" for t in replay["replay_runs"])
        vruns = ", ".join(f"{t * 1000:.0f}" for t in replay["verify_runs"])
        lines += [
            f"| replay of one member's {n:,} events (`LedgerApp.replay`) | {replay['replay'] * 1000:.0f} ms "
            f"({n / replay['replay']:,.0f} events/s) | {runs} ms | 10,000 events < 0.25 s |",
            f"| verify of that member (hash chain + fold) | {replay['verify'] * 1000:.0f} ms | {vruns} ms | — |",
            f"| decoding its payloads alone (kept in a list, collector on) | {replay['decode'] * 1000:.0f} ms | | — |",
        ]
    if rebuild is not None:
        runs = ", ".join(f"{r:,.0f}" for r in rebuild["rates"])
        lines += [
            f"| `rebuild_projections` of {rebuild['events']:,} events, {rebuild['members']:,} members "
            f"(`synchronous=FULL`) | {rebuild['rate']:,.0f} events/s | {runs} | >= 50,000 events/s |",
            f"| decoding those {rebuild['decode_events']:,} member events alone (kept, collector on) | "
            f"{rebuild['decode_events'] / rebuild['decode']:,.0f} events/s | | — |",
            "",
            f"The median rebuild's own split: {rebuild['summary']}.",
        ]
    lines.append(END)
    return "\n".join(lines)


def kept_section(path: Path) -> str:
    """This section of ``path`` with a blank line before it, or "" (for bench/run.py, which rewrites the rest)."""
    return sections.kept(path, BEGIN, END)


def write_section(path: Path, section: str) -> None:
    sections.write(path, section, BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--replay-events", type=int, default=10_000, help="events of the replayed member (0 skips)"
    )
    p.add_argument("--rebuild-events", type=int, default=100_000, help="events of the rebuilt log (0 skips)")
    p.add_argument("--rebuild-copies", type=int, default=10, help="copies of the decided log (see bench.run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="replace this section of that file (e.g. BENCHMARKS.md)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replay-rebuild-") as tmp:
        folder = Path(tmp)
        replay = measure_replay(folder, args.replay_events, args.repeats) if args.replay_events > 0 else None
        if replay is not None:
            print(f"replay: {replay}", flush=True)
        rebuild = (
            measure_rebuild(folder, args.rebuild_events, args.rebuild_copies, args.repeats)
            if args.rebuild_events > 0
            else None
        )
        if rebuild is not None:
            print(f"rebuild: {rebuild}", flush=True)
    section = report(args, replay, rebuild)
    print(section)
    if args.out:
        write_section(Path(args.out), section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
