"""``ledger import --program P FILE``: bring members and opening balances over from the previous system.

Reads FILE (CSV with a header, or JSON lines; columns in docs/import.md) and imports each good row as one
member: identities, consent and profile, opening lots with their original earn and expiry dates, growth value
with its window, tier, paid membership term. Nothing is re-decided by the program's rules.

A bad row (its row number, field and reason go to --errors FILE) never stops the good rows. Running the same
file again imports nothing twice, and continues an import that was interrupted. --dry-run decides every row
and prints the totals to reconcile (members, points by expiry month, tiers) without writing anything.
Prints one JSON document with the totals; exit 0 when every row was good, 1 when some were bad, 2 when the
file or program could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ledger.application.importing import CHUNK, ImportReport, MemberImport, write_errors
from ledger.application.pepper import PepperChanged, check_pepper, fingerprint, recorded_fingerprint
from ledger.application.service import LedgerApp
from ledger.domain.errors import InvalidCommand, NotFound

EPILOG = """\
example:
  ledger import --program little_sprout --dry-run members.csv
  ledger import --program little_sprout --errors bad-rows.csv members.csv
error file (CSV): row,member_id,field,reason,message (row: the line of FILE the record starts on).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="import members and opening balances from the previous system (CSV or JSON lines)",
        description=__doc__.split("\n", 1)[1].replace("``", "") if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "file", metavar="FILE", help="the rows: .csv (with a header) or .jsonl (one JSON object a line)"
    )
    p.add_argument("--program", required=True, help="the program the members move into")
    p.add_argument(
        "--format", choices=("csv", "jsonl"), help="the file's format (default: from its extension)"
    )
    p.add_argument(
        "--source",
        help="the source name recorded on each event and in the idempotency keys"
        " (default: the file's name without its folder); keep it when running the file again",
    )
    p.add_argument("--errors", metavar="FILE", help="write the bad rows to FILE (CSV)")
    p.add_argument(
        "--dry-run", action="store_true", help="check every row and print the totals; write nothing"
    )
    p.add_argument(
        "--chunk", type=int, default=CHUNK, help=f"rows handed to the writer at once (default {CHUNK})"
    )
    p.add_argument("--progress", action="store_true", help="print a progress line to stderr after each chunk")


def _same_pepper(app: LedgerApp, *, record: bool) -> None:
    """The identities are digested with the store's pepper, or not at all (a dry run only compares)."""
    if record:
        check_pepper(app.store, app.pepper, app.clock.now())
        return
    recorded = recorded_fingerprint(app.store)
    if recorded is not None and recorded != fingerprint(app.pepper):
        raise PepperChanged("this store was first served with another identity pepper: start with that one")


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    return "jsonl" if args.file.endswith((".jsonl", ".ndjson", ".json")) else "csv"


def run(args: argparse.Namespace, app: LedgerApp) -> int:
    source = args.source or os.path.basename(args.file)
    if not 1 <= args.chunk <= 10_000:
        print("ledger: --chunk must be 1 to 10000", file=sys.stderr)
        return 2

    def progress(report: ImportReport) -> None:
        if args.progress:
            print(json.dumps({"rows": report.rows, "imported": report.imported,
                              "already_imported": report.already_imported, "errors": len(report.errors)}),
                  file=sys.stderr, flush=True)  # fmt: skip

    try:
        _same_pepper(app, record=not args.dry_run)
    except PepperChanged as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    try:
        run_ = MemberImport(
            app, args.program, source, dry_run=args.dry_run, chunk=args.chunk, after_chunk=progress
        )
        with open(args.file, encoding="utf-8-sig", newline="") as lines:
            report = run_.run_file(lines, _format(args))
    except (InvalidCommand, NotFound, OSError, UnicodeDecodeError) as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    if args.errors:
        with open(args.errors, "w", encoding="utf-8", newline="") as out:
            write_errors(report.errors, out)
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    return 1 if report.errors else 0
