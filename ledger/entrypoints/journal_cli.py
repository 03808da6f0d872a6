"""``ledger journal``: the revenue-recognition journal of a period, one record per entry (docs/finance.md)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime, time

from ledger.application.journal import journal_of
from ledger.application.service import LedgerApp
from ledger.domain.journal import COLUMNS, INSTANT, records

PERIOD_HELP = """\
bounds: an ISO 8601 instant with its offset (2026-03-01T00:00:00+08:00), or a date alone (2026-03-01), meaning
the START of that day in the program's time zone: --from 2026-03-01 --to 2026-04-01 is March. The period is
[from, to): an event counts in it when its business time is at or after --from and before --to.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    j = sub.add_parser("journal", help="the entries a finance system books for the points of a period",
                       description="The revenue-recognition journal of [--from, --to) in business time: one line per"
                       " points movement (issued, redeemed, expired, clawed back, returned, adjusted, arrears repaid,"
                       " merged) with its accounts and its amount in fen, then the totals by kind and the liability"
                       " at both bounds (see docs/finance.md).",
                       epilog=PERIOD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    j.add_argument("--program", required=True, help="program id")
    j.add_argument(
        "--from", dest="start", required=True, metavar="D1", help="the period's first instant or day"
    )
    j.add_argument(
        "--to", dest="end", metavar="D2", help="the instant or day after the period (default: now)"
    )
    j.add_argument("--member", action="append", metavar="M", help="only this member (repeatable)")
    j.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="csv (default) or jsonl")


def bound(app: LedgerApp, program_id: str, value: str, option: str) -> datetime:
    """A period bound: an instant with its offset, or a date alone (the start of that day in the program's zone)."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), app.time_zone(program_id)).astimezone(
                UTC
            )
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ledger: {option}: not an ISO 8601 date or instant: {value!r}") from None
    if at.tzinfo is None:
        raise SystemExit(f"ledger: {option}: give the offset (e.g. +08:00 or Z): {value!r}")
    return at.astimezone(UTC)


def period(app: LedgerApp, program_id: str, start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """The bounds asked for; ``start`` defaults to the program's creation, ``end`` to just after its clock."""
    first = app.program(program_id).policies.versions[0].effective_from
    lower = bound(app, program_id, start, "--from") if start else first
    upper = bound(app, program_id, end, "--to") if end else app.now(program_id) + INSTANT
    return lower, upper


def run(app: LedgerApp, args: argparse.Namespace) -> int:
    start, end = period(app, args.program, args.start, args.end)
    journal = journal_of(app, args.program, start, end, args.member)
    rows = records(journal, app.time_zone(args.program))
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    out = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
    out.writeheader()
    out.writerows(rows)
    return 0
