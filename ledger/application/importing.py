"""Moving in: members and opening balances from the previous system, through the one write path.

Each good row becomes one ``ImportMember`` command, decided by the pure domain (``decide/imports.py``) and
written by the writer in large groups (group commit): the hash chain, the command records and the read models
are written in the same transaction as for any other write. The idempotency key of a row is
``import:{source}:{member_id}``, so running the same file again imports nothing twice and, after a crash,
continues where the last run stopped (rows written before are answered from their stored result and counted as
``already_imported``). A member that exists for another reason (enrolled, or imported from another file) is a
bad row (``MEMBER_EXISTS``), as is an identity held by another member (``IDENTITY_TAKEN``).

A dry run decides every row the same way against the log as it is, and writes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, TextIO

from ledger.application.deadline import CALL_DEADLINE
from ledger.application.identity import identity_digest
from ledger.application.import_rows import ImportRow, RowError, parse_row, records
from ledger.application.results import CommandResult
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import decide
from ledger.domain.errors import Conflict, DomainError, InvalidCommand, NotFound, Refusal
from ledger.domain.liability import expiry_month
from ledger.domain.state import MemberState
from ledger.domain.streams import member_stream

if TYPE_CHECKING:
    from ledger.application.service import LedgerApp

CHUNK = 512
"""Rows handed to the writer at once (it commits them in groups of its ``max_batch``)."""
MAX_SOURCE = 200


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, dry, would do): counts, totals to reconcile, and the bad rows."""

    source: str
    dry_run: bool
    rows: int = 0
    imported: int = 0
    already_imported: int = 0
    """Rows written by an earlier run of the same source (a re-run, or a resumed one): nothing written again."""
    points: int = 0
    points_by_expiry_month: dict[str, int] = field(default_factory=dict)
    tiers: dict[str, int] = field(default_factory=dict)
    memberships: int = 0
    growth: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def members(self) -> int:
        """Good rows: imported now or by an earlier run of the same source."""
        return self.imported + self.already_imported

    def count(self, event: ev.MemberImported, tz: tzinfo) -> None:
        self.tiers[event.tier] = self.tiers.get(event.tier, 0) + 1
        self.growth += event.growth
        self.memberships += 1 if event.membership else 0
        for lot in event.lots:
            self.points += lot.points
            month = expiry_month(lot.expires_at, tz)
            self.points_by_expiry_month[month] = self.points_by_expiry_month.get(month, 0) + lot.points

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "members": self.members,
            "imported": self.imported,
            "already_imported": self.already_imported,
            "errors": len(self.errors),
            "points": self.points,
            "points_by_expiry_month": dict(sorted(self.points_by_expiry_month.items())),
            "tiers": dict(sorted(self.tiers.items())),
            "memberships": self.memberships,
            "growth": self.growth,
        }


def idempotency_key(source: str, member_id: str) -> str:
    return f"import:{source}:{member_id}"


def _row_error(row: ImportRow, exc: DomainError) -> RowError:
    if isinstance(exc, InvalidCommand):
        return RowError(row.row, row.member_id, exc.field, "INVALID_ARGUMENT", exc.message)
    if isinstance(exc, Refusal):
        fields = {"MEMBER_EXISTS": "member_id", "IDENTITY_TAKEN": "identities"}
        return RowError(row.row, row.member_id, fields.get(exc.reason, ""), exc.reason, exc.message)
    if isinstance(exc, Conflict):
        return RowError(
            row.row, row.member_id, "member_id", "IMPORTED_DIFFERENTLY",
            "this member was imported from this source before with other values (or from another row)",
        )  # fmt: skip
    if isinstance(exc, NotFound):
        return RowError(row.row, row.member_id, "", "NOT_FOUND", str(exc))
    return RowError(row.row, row.member_id, "", type(exc).__name__.upper(), str(exc))


class MemberImport:
    """One import of rows into one program (``run`` once)."""

    def __init__(
        self,
        app: LedgerApp,
        program_id: str,
        source: str,
        *,
        dry_run: bool = False,
        chunk: int = CHUNK,
        after_chunk: Callable[[ImportReport], None] | None = None,
    ) -> None:
        if not source or len(source) > MAX_SOURCE:
            raise InvalidCommand("source", f"must be 1 to {MAX_SOURCE} characters")
        self.app = app
        self.program_id = program_id
        self.source = source
        self.chunk = chunk
        self.after_chunk = after_chunk
        """Told after each chunk is written (progress; a test interrupts an import here)."""
        self.report = ImportReport(source=source, dry_run=dry_run)
        program = app.program(program_id)  # NotFound for an unknown program
        self._policies = program.policies
        self._tz = app.time_zone(program_id)
        self._seen: dict[str, int] = {}
        self._identities: dict[str, str] = {}  # dry run: identities claimed by earlier rows of the file

    def run_file(self, lines: Iterable[str], file_format: str) -> ImportReport:
        return self.run(records(lines, file_format))

    def run(self, rows: Iterable[tuple[int, dict[str, object] | RowError]]) -> ImportReport:
        pending: list[ImportRow] = []
        for row in self._checked(rows):
            pending.append(row)
            if len(pending) >= self.chunk:
                self._write(pending)
                pending = []
        if pending:
            self._write(pending)
        self.report.errors.sort(key=lambda e: e.row)
        return self.report

    def _checked(self, rows: Iterable[tuple[int, dict[str, object] | RowError]]) -> Iterator[ImportRow]:
        for n, record in rows:
            self.report.rows += 1
            parsed = record if isinstance(record, RowError) else parse_row(n, dict(record), self._tz)
            if isinstance(parsed, RowError):
                self.report.errors.append(parsed)
                continue
            first = self._seen.get(parsed.member_id)
            if first is not None:
                self.report.errors.append(
                    RowError(
                        n,
                        parsed.member_id,
                        "member_id",
                        "DUPLICATE_ROW",
                        f"the member is also at row {first}",
                    )
                )
                continue
            self._seen[parsed.member_id] = n
            yield parsed

    def _command(self, row: ImportRow) -> cmd.Envelope:
        pepper = self.app.pepper
        digests = tuple(
            identity_digest(pepper, self.program_id, kind, value) for kind, value in row.identities
        )
        command = cmd.ImportMember(
            member_id=row.member_id,
            identities=digests,
            source=self.source,
            row=row.row,
            tier=row.tier,
            tier_since=row.tier_since,
            lots=row.lots,
            growth=row.growth,
            growth_window_start=row.growth_window_start,
            growth_window_end=row.growth_window_end,
            membership=row.membership,
            profile_stored=row.profile is not None,
        )
        return cmd.Envelope(
            self.program_id,
            command,
            idempotency_key(self.source, row.member_id),
            None,
            cmd.Actor(channel="import"),
        )

    def _write(self, rows: list[ImportRow]) -> None:
        envelopes = [self._command(r) for r in rows]
        if self.report.dry_run:
            for row, envelope in zip(rows, envelopes, strict=True):
                self._dry(row, envelope)
        else:
            token = CALL_DEADLINE.set(None)  # an import is the operator's own long job, not a call
            try:
                results: list[object] = self.app.writer.execute_many(
                    envelopes, timeout=600, wait_for_room=True
                )
            except DomainError as exc:  # one request alone is raised, not returned
                results = [exc]
            finally:
                CALL_DEADLINE.reset(token)
            for row, result in zip(rows, results, strict=True):
                if isinstance(result, DomainError):
                    self.report.errors.append(_row_error(row, result))
                elif isinstance(result, BaseException):
                    raise result  # the store or the writer: the run stops; running it again continues
                else:
                    assert isinstance(result, CommandResult)
                    self._done(row, result)
        if self.after_chunk is not None:
            self.after_chunk(self.report)

    def _done(self, row: ImportRow, result: CommandResult) -> None:
        imported = next((e for e in result.events if isinstance(e, ev.MemberImported)), None)
        assert imported is not None, "an import answers with its MemberImported event"
        if result.replayed:
            self.report.already_imported += 1
        else:
            self.report.imported += 1
        self.report.count(imported, self._tz)
        if row.profile is not None:
            personal = self.app.personal
            # A resumed run saves a profile the crashed one may not have saved (never one erased since).
            if not result.replayed or (
                personal.load(self.program_id, row.member_id) is None
                and self.app.view(self.program_id, row.member_id).state.erased_at is None
            ):
                personal.save(self.program_id, row.member_id, row.profile)

    def _dry(self, row: ImportRow, envelope: cmd.Envelope) -> None:
        """Decide the row as the writer would, against the log as it is; write nothing."""
        command = envelope.command
        assert isinstance(command, cmd.ImportMember)
        app = self.app
        try:
            recorded = app.store.find_command(self.program_id, envelope.idempotency_key)
            if recorded is not None:
                self._done_dry(CommandResult.from_bytes(recorded.response).events, replayed=True)
                return
            if app.store.stream_version(member_stream(self.program_id, row.member_id)) > 0:
                raise Refusal(
                    "MEMBER_EXISTS",
                    f"member {row.member_id} already exists in the program",
                    {"id": row.member_id},
                )
            for identity in command.identities:
                owner = app.identity_owner(self.program_id, identity) or self._identities.get(identity)
                if owner is not None and owner != row.member_id:
                    raise Refusal(
                        "IDENTITY_TAKEN", "this channel identity already belongs to another member", {}
                    )
            ctx = app.context(self.program_id, None, row.member_id, look_up_profile=False)
            events = decide(command, MemberState(program_id=self.program_id, member_id=row.member_id), ctx)
        except DomainError as exc:
            self.report.errors.append(_row_error(row, exc))
            return
        for identity in command.identities:
            self._identities[identity] = row.member_id
        self._done_dry(events, replayed=False)

    def _done_dry(self, events: Iterable[ev.MemberEvent], *, replayed: bool) -> None:
        imported = next(e for e in events if isinstance(e, ev.MemberImported))
        if replayed:
            self.report.already_imported += 1
        else:
            self.report.imported += 1
        self.report.count(imported, self._tz)


def write_errors(errors: Iterable[RowError], out: TextIO) -> int:
    """Write the bad rows as CSV (``row,member_id,field,reason,message``) to the text file ``out``; how many."""
    writer = csv.writer(out)
    writer.writerow(["row", "member_id", "field", "reason", "message"])
    n = 0
    for e in errors:
        writer.writerow([e.row, e.member_id, e.field, e.reason, e.message])
        n += 1
    return n
