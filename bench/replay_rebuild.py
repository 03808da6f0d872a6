"""Replay of one long member stream and ``ledger rebuild-projections``, in process, on the embedded SQLite store.

Run as ``python -m bench.replay_rebuild [--replay-events N] [--rebuild-events M] [--repeats R] [--workers W ...]
[--stores sqlite,postgresql] [--out FILE]``.

- **Replay**: one member is enrolled and gets ``N`` purchases, decided by the real write path on a SQLite file
  (``synchronous=OFF``: set-up, not measured). Timed: ``LedgerApp.replay`` of the whole stream
  (``ledger/application/audit.py``: read in chunks, decode, fold, balances and tier after each event) and
  ``verify_member`` (the hash chain, then the same fold), both without gRPC; and, to split the fold, decoding
  the stream's payloads alone (``events.decode``).
- **Rebuild**: a log decided by real commands (``bench.run.generate_template``: enrolments, credits, then the
  benchmark's write mix for random members) is copied ``--rebuild-copies`` times under new member ids
  (``bench.run.copy_events``) into each of ``--stores`` (SQLite; PostgreSQL in a fresh schema of the test server,
  ``$LEDGER_TEST_POSTGRES``), then ``rebuild_projections`` (what ``ledger rebuild-projections`` runs) is timed
  on the store opened with the default settings (``synchronous=FULL``) for each of ``--workers`` (worker
  processes; 0: the fold in this process); the rebuild can run again on the same store, so each repeat rebuilds
  the whole log. Also reported: the workers' peak RSS (from the rebuild's report) and this process's growth
  over the rebuilds, and (SQLite) decoding every member event of that log.

Each figure is the median of ``R`` runs in this process. With ``--out`` the figures replace the section between
``<!-- replay-rebuild -->`` markers of that file (added at its end the first time; ``make bench`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import sections
from bench.run import OPERATOR, POS, PROGRAM, SETUP_CREDIT, copy_events, generate_template
from bench.run import _mark_projected as mark_projected
from ledger.adapters.sqlite.store import SqliteEventStore
from ledger.bootstrap import Settings, build
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.streams import MEMBER_PREFIX, member_stream
from ledger.entrypoints.grpc.convert import actor_of
from ledger.entrypoints.rebuild import rebuild_projections
from policies import OrderLine
from projections.parallel import rss_kb

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


def peak_kb() -> int:
    """This process's peak resident set (KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the rebuild's workers), user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def store_for(kind: str, folder: Path) -> Iterator[str]:
    """The URL of an empty store of ``kind``: a SQLite file in ``folder``, or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'rebuild.db'}"
        return
    from ledger.testing.postgres import fresh_schema, postgres_url

    with fresh_schema(postgres_url()) as url:
        yield url


def load_log(template: Path, url: str, copies: int) -> tuple[int, int]:
    """Copy the template log ``copies`` times into the store at ``url``: (events written, last position)."""
    source = SqliteEventStore(str(template))
    if url.startswith("sqlite:"):
        target: Any = SqliteEventStore(url.removeprefix("sqlite:///"), synchronous="OFF")
    else:
        from ledger.adapters.postgres.store import PostgresEventStore

        target = PostgresEventStore(url)
    try:
        return copy_events(source, target, copies)
    finally:
        source.close()
        target.close()


DECODE_AT_MOST = 100_000


def decode_rate(store: Any, repeats: int) -> tuple[int, float]:
    """Decoding the log's first member events, at most :data:`DECODE_AT_MOST` (kept in a list, collector on):
    (events, seconds)."""
    payloads: list[bytes] = []
    position = 0
    while len(payloads) < DECODE_AT_MOST and (page := store.read_all(after_position=position, limit=20_000)):
        payloads.extend(s.payload for s in page if s.stream_id.startswith(MEMBER_PREFIX))
        position = page[-1].position
    decode = ev.decode
    decoding, _ = median_of(repeats, lambda: [decode(p) for p in payloads])
    return len(payloads), decoding


def measure_rebuild(folder: Path, template: Path, kind: str, copies: int, workers: list[int],
                    repeats: int) -> list[dict[str, Any]]:  # fmt: skip
    """Rebuild the log copied into a store of ``kind``, ``repeats`` times for each worker count."""
    figures: list[dict[str, Any]] = []
    with store_for(kind, folder) as url:
        existing = folder / "rebuild.db"
        if kind == "sqlite" and existing.exists():  # --folder: the log copied by an earlier run
            loaded = last = _count(existing)
        else:
            loaded, last = load_log(template, url, copies)
        # the read models marked as up to date (empty): opening the store does not fold the log into them first
        mark_projected("sqlite" if kind == "sqlite" else "postgres", url, last)
        wired = build(Settings(store_url=url))
        try:
            decoded = decode_rate(wired.backend.store, repeats) if kind == "sqlite" else None
            for count in workers:
                reports: list[dict[str, Any]] = []
                before, cpu = rss_kb(), []
                for _ in range(repeats):
                    started = cpu_seconds()
                    reports.append(rebuild_projections(wired.app, wired.backend, count))
                    cpu.append(cpu_seconds() - started)
                    print(f"rebuild ({kind}, {count} workers, {cpu[-1]:.1f} s of CPU here): "
                          f"{reports[-1]['summary']}", flush=True)  # fmt: skip
                rates = [float(r["events_per_second"]) for r in reports]
                middle = sorted(reports, key=lambda r: float(r["events_per_second"]))[len(reports) // 2]
                figures.append({
                    "store": kind, "workers": count, "events": loaded, "members": int(middle["members"]),
                    "rate": statistics.median(rates), "rates": rates, "summary": str(middle["summary"]),
                    "worker_rss_kb": max(int(r["peak_worker_rss_kb"]) for r in reports),
                    "worker_growth_kb": max(int(r["worker_rss_growth_kb"]) for r in reports),
                    "cpu_per_event_us": statistics.median(cpu) / loaded * 1e6,
                    "growth_kb": rss_kb() - before, "decoded": decoded,
                })  # fmt: skip
        finally:
            wired.app.close()
            wired.backend.store.close()
    return figures


def _count(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def make_template(folder: Path, events: int, copies: int) -> Path:
    template_events = -(-events // copies)
    template = folder / "template.db"
    if template.exists():  # --folder: made by an earlier run
        return template
    generate_template(str(template), max(1, template_events // EVENTS_PER_MEMBER), template_events, 7)
    return template


def report(args: argparse.Namespace, replay: dict[str, Any] | None, rebuild: list[dict[str, Any]] | None) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        BEGIN,
        "## Replay and rebuild in process (`bench.replay_rebuild`)",
        "",
        f"`python -m bench.replay_rebuild --replay-events {args.replay_events} --rebuild-events "
        f"{args.rebuild_events} --rebuild-copies {args.rebuild_copies} --repeats {args.repeats} --workers "
        f"{' '.join(map(str, args.workers))} --stores {args.stores}`, {platform.machine()} with {os.cpu_count()} "
        f"CPUs; in process (the rebuild's workers aside), no gRPC; medians of {args.repeats} runs (load average "
        f"{load:.1f} at the end; peak RSS of this process {peak_kb() / 1024:,.0f} MiB).",
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
    for figure in rebuild or []:
        runs = ", ".join(f"{r:,.0f}" for r in figure["rates"])
        how = f"{figure['workers']} worker processes" if figure["workers"] else "the fold in process"
        lines += [
            f"| `rebuild_projections` of {figure['events']:,} events, {figure['members']:,} members, "
            f"{figure['store']}, {how} | {figure['rate']:,.0f} events/s | {runs} | >= 50,000 events/s |",
        ]
        lines.append(f"| its CPU time per event (this process and its workers; not the database server's) | "
                     f"{figure['cpu_per_event_us']:,.1f} us | | — |")  # fmt: skip
        if figure["workers"]:
            lines.append(
                f"| its workers' peak RSS, the largest (grown from its start by) | "
                f"{figure['worker_rss_kb'] / 1024:,.0f} MiB ({figure['worker_growth_kb'] / 1024:,.0f} MiB) | | bounded |"
            )
        lines.append(f"| this process's RSS growth over those rebuilds | {figure['growth_kb'] / 1024:,.0f} MiB | | — |")
        if figure["decoded"] is not None:
            count, seconds = figure["decoded"]
            lines.append(f"| decoding those {count:,} member events alone (kept, collector on) | "
                         f"{count / seconds:,.0f} events/s | | — |")  # fmt: skip
    for figure in rebuild or []:
        lines += ["", f"The median rebuild's own split ({figure['store']}, {figure['workers']} workers): "
                  f"{figure['summary']}."]  # fmt: skip
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
    p.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1],
                   help="worker processes of the rebuild, one figure each (0: in process; default: one per CPU)")
    p.add_argument("--stores", default="sqlite", help="comma-separated: sqlite, postgresql (the test server)")
    p.add_argument("--out", help="replace this section of that file (e.g. BENCHMARKS.md)")
    p.add_argument("--folder", help="keep the SQLite files there (default: a temporary folder); a template and a "
                   "copied log found there are used as they are")  # fmt: skip
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="replay-rebuild-") as tmp:
        folder = Path(args.folder or tmp)
        replay = measure_replay(folder, args.replay_events, args.repeats) if args.replay_events > 0 else None
        if replay is not None:
            print(f"replay: {replay}", flush=True)
        rebuild = None
        if args.rebuild_events > 0:
            template = make_template(folder, args.rebuild_events, args.rebuild_copies)
            rebuild = []
            for kind in args.stores.split(","):
                rebuild += measure_rebuild(folder, template, kind, args.rebuild_copies, args.workers, args.repeats)
    section = report(args, replay, rebuild)
    print(section)
    if args.out:
        write_section(Path(args.out), section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
