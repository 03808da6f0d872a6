"""``ledger replay`` and ``ledger liability``: a member's events from the log and the program's points liability,
either also as of a business time and as known at a recording time (docs/finance.md)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime, time, timedelta

from ledger.application.service import LedgerApp
from ledger.bootstrap import REFERENCE_PROGRAM_ID

TIMES_HELP = """\
times: an ISO 8601 instant with its offset (2026-02-28T23:59:59+08:00, 2026-03-05T02:00:00Z), or a date alone
(2026-02-28), meaning the end of that day in the program's time zone. Neither may be after the program's clock.
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("replay", help="print every event of one member with the balance after it",
                       description="Replay one member's stream from the log, one JSON line per event. With --as-of:"
                       " the events that count as of that business time (as known at --as-known-at, default now),"
                       " then one line with the balance, lots and tier then (see docs/finance.md).",
                       epilog=TIMES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("member_id")
    r.add_argument("--program", default=REFERENCE_PROGRAM_ID, help="program id (default little_sprout)")
    r.add_argument("--as-of", metavar="TIME", help="fold the log as of this business time")
    r.add_argument("--as-known-at", metavar="TIME", help="only the events recorded by then (default now)")

    li = sub.add_parser("liability", help="the program's points liability as of a date, in money",
                        description="Outstanding points of every member as of a business time, by state and expiry"
                        " month, valued at the program's redemption value, with breakage from the program's history"
                        " and, with --since, the movements of the period (see docs/finance.md).",
                        epilog=TIMES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    li.add_argument("--program", default=REFERENCE_PROGRAM_ID, help="program id (default little_sprout)")
    li.add_argument("--as-of", metavar="TIME", help="business time (default now)")
    li.add_argument("--as-known-at", metavar="TIME", help="only the events recorded by then (default now)")
    li.add_argument("--since", metavar="TIME", help="also the movements from this business time to --as-of")
    li.add_argument("--format", choices=("json", "csv"), default="json", help="json (default) or csv")


def run_replay(app: LedgerApp, args: argparse.Namespace) -> int:
    """Every event of the member with the balance after it, one JSON line each."""
    for e in app.replay(args.program, args.member_id):
        print(json.dumps({
            "version": e.stored.version, "position": e.stored.position, "type": e.stored.type,
            "occurred_at": e.stored.occurred_at.isoformat(), "recorded_at": e.stored.recorded_at.isoformat(),
            "policy_version": e.stored.policy_version, "active": e.after.active, "pending": e.after.pending,
            "held": e.after.held, "arrears": e.after.arrears, "hash": e.stored.hash.hex(),
            "payload": json.loads(e.stored.payload),
        }, ensure_ascii=False))  # fmt: skip
    return 0


def _time(app: LedgerApp, program_id: str, value: str | None, option: str) -> datetime | None:
    """An option's time: an instant with its offset, or a date alone (the end of that day in the program's zone)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day + timedelta(days=1), time(), app.time_zone(program_id))
            return start.astimezone(UTC) - timedelta(microseconds=1)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ledger: {option}: not an ISO 8601 date or instant: {value!r}") from None
    if at.tzinfo is None:
        raise SystemExit(f"ledger: {option}: give the offset (e.g. +08:00 or Z): {value!r}")
    return at.astimezone(UTC)


def run_replay_as_of(app: LedgerApp, args: argparse.Namespace) -> int:
    from ledger.application.as_of import fold_member, resolve_times
    from ledger.domain.queries import balance_figures, current_tier, lot_status

    program = args.program
    times = resolve_times(app, program, _time(app, program, args.as_of, "--as-of"),
                          _time(app, program, args.as_known_at, "--as-known-at"))  # fmt: skip
    folded = fold_member(app, program, args.member_id, times)
    for c in folded.events:
        print(json.dumps({"event_id": c.event_id or None, "type": c.event.type, "counted_at": c.counted_at.isoformat(),
                          "payload": c.event.model_dump(mode="json")}, ensure_ascii=False))  # fmt: skip
    state = folded.state
    f = balance_figures(state, times.as_of)
    policy = app.program(program).policies.in_force_at(times.as_of).policy if state.enrolled else None
    print(json.dumps({
        "as_of": times.as_of.isoformat(), "as_known_at": times.as_known_at.isoformat(), "enrolled": state.enrolled,
        "balance": {"active": f.active, "pending": f.pending, "held": f.held, "available": f.available,
                    "arrears": f.arrears},
        "tier": current_tier(state, policy, times.as_of) if policy else None,
        "lots": [{"lot_id": lot.lot_id, "source": lot.source, "amount": lot.amount, "remaining": lot.remaining,
                  "held": lot.held, "status": lot_status(lot), "active_at": lot.active_at.isoformat(),
                  "expires_at": lot.expires_at.isoformat()}
                 for lot in sorted(state.lots.values(), key=lambda lot: lot.order_key())],
        "entitlements": sorted(state.entitlements),
    }, ensure_ascii=False))  # fmt: skip
    return 0


def run_liability(app: LedgerApp, args: argparse.Namespace) -> int:
    from ledger.application.liability import program_liability, report_document, report_lines

    program = args.program
    report = program_liability(
        app, program, _time(app, program, args.as_of, "--as-of"), _time(app, program, args.as_known_at, "--as-known-at"),
        _time(app, program, args.since, "--since"),
    )  # fmt: skip
    if args.format == "json":
        print(json.dumps(report_document(report), ensure_ascii=False))
        return 0
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["program_id", "as_of", "as_known_at", "section", "name", "points", "value_fen"])
    for section, name, points, fen in report_lines(report):
        out.writerow([program, report.as_of.isoformat(), report.as_known_at.isoformat(), section, name, points, fen])
    ratio = report.closing.breakage
    out.writerow([program, report.as_of.isoformat(), report.as_known_at.isoformat(), "breakage", "ratio",
                  f"{ratio.numerator}/{ratio.denominator}", ratio.numerator * 10_000 // ratio.denominator])  # fmt: skip
    return 0
