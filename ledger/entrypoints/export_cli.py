"""``ledger export-member --program P --member M``: the subject-access export (PIPL) of one member, as JSON.

Prints what ``MemberQueryService.ExportMemberData`` answers: the profile decrypted from the vault (or that it
was erased), the channel identities as stored (keyed digests only: raw values are not kept), every event of the
member, and the balance and tier now. With ``--output FILE`` the document goes to that file instead (created
readable by its owner only, as it holds personal data). See docs/security.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from ledger.application.member_export import export_document
from ledger.application.service import LedgerApp
from ledger.domain.errors import NotFound


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser(
        "export-member",
        help="everything the ledger holds about one member, as JSON (subject-access request)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--program", required=True, help="the program id")
    e.add_argument("--member", required=True, help="the member id")
    e.add_argument(
        "--output", metavar="FILE", help="write the document to FILE (mode 0600) instead of stdout"
    )


def run(args: argparse.Namespace, app: LedgerApp) -> int:
    try:
        document = export_document(app, args.program, args.member)
    except NotFound as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        print(document)
        return 0
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(document + "\n")
    return 0
