"""How fast members move in: rows of ``ledger import`` imported per second on the embedded SQLite store.

Run as ``python -m bench.import_rate [--rows N] [--chunk C] [--out FILE]``. It writes a CSV of N members (two
identities, a tier with its date, growth with its window, three opening lots each) to a temporary folder,
creates a fresh SQLite store (durable: ``synchronous=FULL``, the default) with a program on a test clock, and
imports the file through the same path as ``ledger import`` (:class:`~ledger.application.importing.MemberImport`:
the writer's group commit, hash chain, command records and read models in each transaction). It reports the
rate, the time a dry run of the same file takes, and the time 1,000,000 members would take at that rate. With
``--out`` the figures replace the section between ``<!-- import-rate -->`` markers of that file (added at its
end the first time; ``make bench`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import sections
from ledger.application.clock import ManualClock
from ledger.application.importing import MemberImport
from ledger.bootstrap import Settings, build, reference_document

BEGIN, END = "<!-- import-rate -->", "<!-- /import-rate -->"
START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
TARGET_MEMBERS = 1_000_000
TARGET_SECONDS = 15 * 60
HEADER = "member_id,identities,tier,tier_since,growth,growth_window_start,growth_window_end,lots"
TIERS = ("regular", "silver", "gold", "diamond")


def write_rows(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "\n")
        for i in range(rows):
            lots = ";".join(
                f"{(i * 7 + k) % 900 + 100}@2026-0{k + 1}-1{i % 10}@2027-0{k + 1}-28" for k in range(3)
            )
            out.write(
                f"M{i:08d},card_number:C{i:08d};open_id:o-{i},{TIERS[i % 4]},2026-0{i % 9 + 1}-01,"
                f"{i % 12_000},2025-12-01,2026-11-30,{lots}\n"
            )


def measure(rows: int, chunk: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="import-rate-") as tmp:
        folder = Path(tmp)
        file = folder / "members.csv"
        write_rows(file, rows)
        url = f"sqlite:///{folder / 'ledger.db'}"
        w = build(Settings(store_url=url, reference_program=False), ManualClock(START))
        try:
            w.app.create_program("bench", "Bench", reference_document(), "test", START, "create")
            lines = file.read_text(encoding="utf-8").splitlines()
            started = time.perf_counter()
            dry = MemberImport(w.app, "bench", "members.csv", dry_run=True, chunk=chunk).run_file(
                lines, "csv"
            )
            dry_seconds = time.perf_counter() - started
            started = time.perf_counter()
            report = MemberImport(w.app, "bench", "members.csv", chunk=chunk).run_file(lines, "csv")
            seconds = time.perf_counter() - started
            assert report.imported == rows and not report.errors and dry.imported == rows
            started = time.perf_counter()
            again = MemberImport(w.app, "bench", "members.csv", chunk=chunk).run_file(lines, "csv")
            rerun_seconds = time.perf_counter() - started
            assert again.already_imported == rows
        finally:
            w.app.close()
    return {"seconds": seconds, "dry_seconds": dry_seconds, "rerun_seconds": rerun_seconds}


def report(rows: int, chunk: int, figures: dict[str, float]) -> str:
    rate = rows / figures["seconds"]
    million = TARGET_MEMBERS / rate
    verdict = "meets" if million <= TARGET_SECONDS else "misses"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        BEGIN,
        "## Moving in (`ledger import`)",
        "",
        f"`python -m bench.import_rate --rows {rows} --chunk {chunk}`, {platform.machine()} with {os.cpu_count()} CPUs;"
        f" one process, embedded SQLite store (`synchronous=FULL`), each member with 2 identities and 3 opening lots"
        f" (load average {load:.1f} at the end).",
        "",
        "| phase | rows | seconds | rows/s |",
        "|---|---|---|---|",
        f"| import | {rows:,} | {figures['seconds']:.1f} | {rate:,.0f} |",
        f"| dry run (nothing written) | {rows:,} | {figures['dry_seconds']:.1f} | {rows / figures['dry_seconds']:,.0f} |",
        f"| the same file again (nothing written twice) | {rows:,} | {figures['rerun_seconds']:.1f} |"
        f" {rows / figures['rerun_seconds']:,.0f} |",
        "",
        f"At {rate:,.0f} rows/s, 1,000,000 members take {million / 60:.1f} minutes: this {verdict} the target of"
        f" under 15 minutes (a linear extrapolation; the store grows as it goes).",
        END,
    ])  # fmt: skip


def kept_section(path: Path) -> str:
    """The import section of ``path`` with a blank line before it, or "" (for bench/run.py, which rewrites the rest)."""
    return sections.kept(path, BEGIN, END)


def write_section(path: Path, section: str) -> None:
    sections.write(path, section, BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="members to import (default 20000)")
    p.add_argument("--chunk", type=int, default=512, help="rows handed to the writer at once (default 512)")
    p.add_argument("--out", help="replace the import section of this file (e.g. BENCHMARKS.md)")
    args = p.parse_args(argv)
    section = report(args.rows, args.chunk, measure(args.rows, args.chunk))
    print(section)
    if args.out:
        write_section(Path(args.out), section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
