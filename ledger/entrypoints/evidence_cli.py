"""``ledger export-audit`` and ``ledger verify-bundle``: the evidence bundle an outside auditor checks alone.

``verify-bundle`` opens no store and reaches no server: it is dispatched before ``ledger`` wires a store, and
imports only the bundle's checker, the chain and the pure domain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.application.service import LedgerApp

EXPORT_HELP = """\
The bundle is a directory (see docs/finance.md, "The evidence bundle"): every event of the selected members
(whole streams: a chain cannot be checked from the middle), the program stream, the policy documents, the
members' balances, the liability at both bounds and the journal of [--from, --to), and manifest.json with the
SHA-256 digest of every file. Bounds as for `ledger journal` (a date alone is the start of that day in the
program's time zone); default: the whole history up to now. Sign it with an Ed25519 key made by
  openssl genpkey -algorithm ed25519 -out bundle-signing.pem
  openssl pkey -in bundle-signing.pem -pubout -out bundle-signing.pub.pem
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("export-audit", help="write an evidence bundle an auditor checks with `ledger verify-bundle`",
                       description="Write the evidence bundle of a program, or of some of its members, to OUT.",
                       epilog=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    e.add_argument("out", metavar="OUT", help="a new (or empty) directory")
    e.add_argument("--program", required=True, help="program id")
    e.add_argument(
        "--member", action="append", metavar="M", help="only this member (repeatable; default: every one)"
    )
    e.add_argument(
        "--from", dest="start", metavar="D1", help="the period's first instant or day (default: the start)"
    )
    e.add_argument(
        "--to", dest="end", metavar="D2", help="the instant or day after the period (default: now)"
    )
    e.add_argument("--sign-key", metavar="PEM", help="an Ed25519 private key: also write manifest.sig")
    v = sub.add_parser("verify-bundle", help="check an evidence bundle alone (no server, no store); exit 1 on a finding",
                       description="Check every file digest, every hash-chain link (the first broken one named with its"
                       " member and version), each member's balance folded again from its events, and the journal and"
                       " liability recomputed from the events. Exit 0 when all holds, 1 otherwise.")  # fmt: skip
    v.add_argument("bundle", metavar="OUT", help="the bundle's directory")
    v.add_argument("--public-key", metavar="PEM", help="also check manifest.sig with this Ed25519 public key")


def run_export(app: LedgerApp, args: argparse.Namespace) -> int:
    from ledger.entrypoints.journal_cli import period
    from ledger.evidence.export import BundleRefused, export_bundle
    from ledger.evidence.signature import KeyRefused, sign_manifest

    start, end = period(app, args.program, args.start, args.end)
    out = Path(args.out)
    try:
        manifest = export_bundle(app, args.program, out, start, end, args.member)
        if args.sign_key:
            sign_manifest(out, Path(args.sign_key))
    except (BundleRefused, KeyRefused) as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"bundle": str(out), "signed": bool(args.sign_key), **manifest["counts"]}))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ledger.evidence.check import check_bundle
    from ledger.evidence.signature import KeyRefused, signature_check

    try:
        check = signature_check(Path(args.public_key)) if args.public_key else None
    except (KeyRefused, OSError) as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    findings = check_bundle(Path(args.bundle), check)
    for line in findings.checked:
        print(f"ok: {line}")
    for line in findings.failures:
        print(f"FAIL: {line}")
    print("bundle verified" if findings.ok else "bundle NOT verified")
    return 0 if findings.ok else 1
