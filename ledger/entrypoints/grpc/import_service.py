"""``loyalty.v1.ImportService``: the rows of ``ledger import`` streamed in over gRPC (operator and admin keys).

Each streamed row is turned into the record a file row would be (the same column names) and goes through the
same checks and the same import (:mod:`ledger.application.importing`), as it arrives: rows are written in
chunks while the client is still sending. A row whose fields break the API's generic limits is a bad row, like
any other; only a stream that changes its program or source, or goes past :data:`MAX_ROWS`, is refused whole
(what it wrote before that stays written, and sending the rows again continues it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any, Final

import grpc

from ledger.application.import_rows import MAX_ROW_CHARS, RowError
from ledger.application.importing import ImportReport, MemberImport
from ledger.application.service import LedgerApp
from ledger.domain.errors import InvalidCommand
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.errors import InvalidFields, abort
from ledger.entrypoints.grpc.validation import check_request
from loyalty.v1 import import_pb2, import_pb2_grpc

MAX_ROWS: Final = 100_000
"""Rows one ImportMembers call may send (split a larger import into several calls; the keys make that safe)."""


def _time(message: Any, name: str) -> str | None:
    if not message.HasField(name):
        return None
    return str(getattr(message, name).ToDatetime(tzinfo=UTC).isoformat())


def record_of(row: import_pb2.ImportRow) -> dict[str, Any]:
    """The row as the record of a file row (the columns of docs/import.md)."""
    record: dict[str, Any] = {"member_id": row.member_id}
    if row.identities:
        record["identities"] = [
            {"kind": cv.IDENTITY_KINDS.get(i.kind, "unspecified"), "value": i.value} for i in row.identities
        ]
    if row.HasField("profile"):
        p = row.profile
        record.update(consent=p.consent, birth_month=p.birth_month or None)
        record.update(baby_birth_date=p.baby_birth_date or None, phone=p.phone or None)
    record.update(tier=row.tier or None, tier_since=_time(row, "tier_since"), growth=row.growth or None)
    record.update(growth_window_start=_time(row, "growth_window_start"))
    record.update(growth_window_end=_time(row, "growth_window_end"))
    if row.lots:
        record["lots"] = [
            {
                "points": lot.points,
                "earned_at": _time(lot, "earned_at"),
                "expires_at": _time(lot, "expires_at"),
            }
            for lot in row.lots
        ]
    if row.HasField("membership"):
        m = row.membership
        record.update(membership_plan=m.plan or None, membership_id=m.membership_id or None)
        record.update(membership_start=_time(m, "term_start"), membership_end=_time(m, "term_end"))
        record.update(membership_paid_fen=m.paid_fen or None)
    return {k: v for k, v in record.items() if v is not None and v != ""}


def response_of(report: ImportReport) -> import_pb2.ImportMembersResponse:
    return import_pb2.ImportMembersResponse(
        rows=report.rows,
        imported=report.imported,
        already_imported=report.already_imported,
        points=report.points,
        points_by_expiry_month=[
            import_pb2.ImportMonth(month=m, points=p)
            for m, p in sorted(report.points_by_expiry_month.items())
        ],
        tiers=[import_pb2.ImportTier(tier=t, members=n) for t, n in sorted(report.tiers.items())],
        memberships=report.memberships,
        growth=report.growth,
        errors=[
            import_pb2.ImportRowError(
                row=e.row, member_id=e.member_id, field=e.field, reason=e.reason, message=e.message
            )
            for e in report.errors
        ],
        dry_run=report.dry_run,
    )


class _Stream:
    """The stream's rows as ``(row, record)``, checking that every message names the same program and source."""

    def __init__(
        self, first: import_pb2.ImportMembersRequest, rest: Iterator[import_pb2.ImportMembersRequest]
    ) -> None:
        self.first = first
        self.rest = rest
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        message: import_pb2.ImportMembersRequest | None = self.first
        while message is not None:
            for name in ("program_id", "source", "dry_run"):
                if getattr(message, name) != getattr(self.first, name):
                    raise InvalidCommand(name, "must be the same in every message of the stream")
            for row in message.rows:
                self.count += 1
                if self.count > MAX_ROWS:
                    raise InvalidCommand(
                        "rows", f"at most {MAX_ROWS} rows per call; send the rest in another call"
                    )
                yield row.row, self._checked(row)
            message = next(self.rest, None)

    @staticmethod
    def _checked(row: import_pb2.ImportRow) -> dict[str, Any] | RowError:
        if row.row < 1:
            return RowError(row.row, row.member_id[:128], "row", "INVALID_ARGUMENT", "must be 1 or more")
        if row.ByteSize() > MAX_ROW_CHARS:
            return RowError(
                row.row, row.member_id[:128], "row", "INVALID_ARGUMENT", f"larger than {MAX_ROW_CHARS} bytes"
            )
        try:
            check_request(row)
        except InvalidFields as bad:
            return RowError(row.row, row.member_id[:128], bad.field, "INVALID_ARGUMENT", bad.message)
        return record_of(row)


class ImportService(import_pb2_grpc.ImportServiceServicer):
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    def ImportMembers(
        self, request_iterator: Iterator[import_pb2.ImportMembersRequest], context: grpc.ServicerContext
    ) -> import_pb2.ImportMembersResponse:
        try:
            first = next(request_iterator, None)
            if first is None:
                raise InvalidCommand("rows", "the stream sent no message")
            if not first.program_id:
                raise InvalidCommand("program_id", "is required")
            run = MemberImport(self.app, first.program_id, first.source, dry_run=first.dry_run)
            report = run.run(_Stream(first, request_iterator))
        except grpc.RpcError:
            raise
        except Exception as exc:
            abort(context, exc)
        return response_of(report)
