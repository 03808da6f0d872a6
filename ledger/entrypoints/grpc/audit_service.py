"""``loyalty.v1.AuditService``: replay a member's events with running balances, verify the log, the points liability."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import grpc

from ledger.application.liability import LiabilityReport, program_liability
from ledger.application.mall import verify_stock
from ledger.application.service import LedgerApp
from ledger.domain import events as ev
from ledger.domain import queries
from ledger.domain.liability import CATEGORIES
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import (
    Checks,
)
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
)

# ReplayMember pages: at most page_size events (default and maximum here), and a page is closed early once its
# events' estimated size passes REPLAY_PAGE_BYTES, so pages stay far below gRPC's 4 MiB default message limit.
DEFAULT_REPLAY_PAGE = 500


MAX_REPLAY_PAGE = 1000


REPLAY_PAGE_BYTES = 1 << 20


REPLAY_EVENT_OVERHEAD = 512  # bytes of an event besides its payload: ids, hashes, summary, balances, lots


def _problem(member_id: str, report: Any) -> audit_pb2.VerificationProblem | None:
    if report.chain_break is not None:
        brk = report.chain_break
        reason = str(brk.reason)
        lowered = reason.lower()
        if "prev" in lowered:
            kind = audit_pb2.PROBLEM_KIND_CHAIN_BROKEN
        elif "version" in lowered or "head" in lowered:
            kind = audit_pb2.PROBLEM_KIND_VERSION_GAP
        elif "hash" in lowered:
            kind = audit_pb2.PROBLEM_KIND_HASH_MISMATCH
        else:
            kind = audit_pb2.PROBLEM_KIND_CHAIN_BROKEN
        return audit_pb2.VerificationProblem(
            kind=kind, member_id=member_id, version=brk.version, position=brk.position or 0, description=reason
        )
    if report.mismatches:
        text = str(report.mismatches[0])
        kind = (
            audit_pb2.PROBLEM_KIND_PAYLOAD_UNREADABLE if text.startswith("replay failed") else audit_pb2.PROBLEM_KIND_PROJECTION_MISMATCH
        )
        return audit_pb2.VerificationProblem(kind=kind, member_id=member_id, description=text)
    return None


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    @rpc
    def ReplayMember(
        self, request: audit_pb2.ReplayMemberRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.ReplayMemberResponse]:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        if request.after_version < 0:
            c.fail("after_version", "must not be negative")
        c.between("page_size", request.page_size, 0, MAX_REPLAY_PAGE)
        c.done()
        size = request.page_size or DEFAULT_REPLAY_PAGE
        # One fold gives balances and tiers; events up to after_version are folded but no message is built.
        entries = self.app.replay(request.program_id, request.member_id, request.after_version)
        tz = self.app.time_zone(request.program_id)
        # Submessages are filled in place (cheaper than building them and copying them in); equal instants and
        # actors repeat across events, so each is converted once.
        actors: dict[tuple[tuple[str, str], ...], common_pb2.Actor] = {}
        times: dict[datetime, tuple[int, int]] = {}

        def stamp(target: Any, value: datetime) -> None:
            found = times.get(value)
            if found is None:
                ts = cv.to_timestamp(value)
                found = times[value] = (ts.seconds, ts.nanos)
            target.seconds, target.nanos = found

        page = audit_pb2.ReplayMemberResponse()
        add = page.events.add
        count = 0
        page_bytes = 0
        for e in entries:
            s = e.stored
            event = e.event
            before, after = e.before, e.after
            payload = s.payload.decode()
            item = add(
                version=s.version,
                position=s.position,
                event_id=s.event_id,
                event_type=s.type,
                schema_version=s.schema_version,
                policy_version=s.policy_version or 0,
                rule=queries.rule(event),
                summary=queries.summary(event, tz),
                idempotency_key=s.idempotency_key or "",
                correlation_id=s.correlation_id or "",
                causation_id=s.causation_id or "",
                payload_json=payload,
                points_delta=cv.net_points(after) - cv.net_points(before),
                growth_delta=queries.growth_delta(event),
                tier_after=e.tier_after,
                prev_hash=s.prev_hash.hex(),
                hash=s.hash.hex(),
            )
            stamp(item.occurred_at, s.occurred_at)
            stamp(item.recorded_at, s.recorded_at)
            actor_key = tuple(s.actor.items())
            actor = actors.get(actor_key)
            if actor is None:
                actor = actors[actor_key] = cv.actor_message(s.actor)
            item.actor.CopyFrom(actor)
            balance = item.balance_after  # as cv.snapshot
            balance.active = after.active
            balance.pending = after.pending
            balance.held = after.held
            balance.available = max(after.available, 0)
            balance.arrears = after.arrears
            if isinstance(event, (ev.PurchaseRecorded, ev.PointsAwarded)):
                # The common events: their one new lot, nothing debited (as cv.lots_credited / lots_debited).
                if event.lot is not None:
                    portion = item.lots_credited.add(lot_id=event.lot.lot_id, points=event.lot.points)
                    stamp(portion.expires_at, event.lot.expires_at)
            else:
                item.lots_credited.extend(cv.lots_credited(event))
                item.lots_debited.extend(cv.lots_debited(event))
            count += 1
            page_bytes += len(payload) + REPLAY_EVENT_OVERHEAD
            if count >= size or page_bytes >= REPLAY_PAGE_BYTES:
                yield page
                page = audit_pb2.ReplayMemberResponse()
                add = page.events.add
                count = 0
                page_bytes = 0
        if count:
            yield page

    @rpc
    def VerifyMember(self, request: audit_pb2.VerifyMemberRequest, context: grpc.ServicerContext) -> audit_pb2.VerifyMemberResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        c.done()
        report = self.app.verify_member(request.program_id, request.member_id)
        response = audit_pb2.VerifyMemberResponse(
            member_id=request.member_id, ok=report.ok, events_checked=report.events, head_hash=report.head_hash.hex()
        )
        problem = _problem(request.member_id, report)
        if problem is not None:
            response.first_problem.CopyFrom(problem)
        return response

    @rpc
    def VerifyProgram(
        self, request: audit_pb2.VerifyProgramRequest, context: grpc.ServicerContext
    ) -> Iterator[audit_pb2.VerifyProgramResponse]:
        c = Checks()
        c.program_id(request.program_id)
        c.done()
        self.app.program(request.program_id)
        summary = audit_pb2.VerifyProgramSummary(ok=True, program_stream_ok=True)
        for report in self.app.verify_program(request.program_id):
            summary.members_checked += 1
            summary.events_checked += report.events
            if not report.ok:
                summary.members_failed += 1
                summary.ok = False
            if request.include_ok or not report.ok:
                member = audit_pb2.MemberVerification(
                    member_id=report.member_id, ok=report.ok, events_checked=report.events
                )
                problem = _problem(report.member_id, report)
                if problem is not None:
                    member.first_problem.CopyFrom(problem)
                yield audit_pb2.VerifyProgramResponse(member=member)
        for stock in verify_stock(self.app, request.program_id):
            summary.stocks.add(
                stream_id=stock.stream_id, ok=stock.ok, events_checked=stock.events, problems=stock.problems
            )
            summary.ok = summary.ok and stock.ok
        yield audit_pb2.VerifyProgramResponse(summary=summary)

    @rpc
    def GetLiability(self, request: audit_pb2.GetLiabilityRequest, context: grpc.ServicerContext) -> audit_pb2.GetLiabilityResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.done()
        report = program_liability(
            self.app, request.program_id, cv.optional_datetime(request, "as_of"),
            cv.optional_datetime(request, "as_known_at"), cv.optional_datetime(request, "since"),
        )  # fmt: skip
        return liability_message(report)


def _amount(report: LiabilityReport, points: int) -> audit_pb2.LiabilityAmount:
    return audit_pb2.LiabilityAmount(points=points, value_fen=report.fen(points))


def liability_message(report: LiabilityReport) -> audit_pb2.GetLiabilityResponse:
    """The response of GetLiability for a report (all amounts at the report's point value)."""
    closing = report.closing
    ratio = closing.breakage
    response = audit_pb2.GetLiabilityResponse(
        program_id=report.program_id,
        point_value_fen=report.point_value_fen,
        pending=_amount(report, closing.pending),
        active=_amount(report, closing.active),
        held=_amount(report, closing.held),
        total=_amount(report, closing.total),
        by_expiry_month=[
            audit_pb2.LiabilityMonth(month=month, outstanding=_amount(report, points))
            for month, points in sorted(closing.by_month.items())
        ],
        arrears_points=closing.arrears,
        breakage_ratio=f"{ratio.numerator}/{ratio.denominator}",
        breakage_basis_points=ratio.numerator * 10_000 // ratio.denominator,
        settled_points_expired=closing.settled_expired,
        settled_points_credited=closing.settled_credited,
        expected_breakage=_amount(report, closing.total * ratio.numerator // ratio.denominator),
        members=closing.members,
    )
    cv.stamp(response.as_of, report.as_of)
    cv.stamp(response.as_known_at, report.as_known_at)
    if report.opening is not None and report.since is not None:
        period = report.period()
        movements = audit_pb2.LiabilityMovements(
            opening=_amount(report, report.opening.total), closing=_amount(report, closing.total)
        )
        for category in CATEGORIES:
            getattr(movements, category).CopyFrom(_amount(report, period.get(category, 0)))
        cv.stamp(movements.since, report.since)
        response.movements.CopyFrom(movements)
    return response
