"""The four ``loyalty.v1`` services over the application facade.

Each handler checks the request's shape (:mod:`ledger.api.validation`), maps it to a facade call or a domain
command in an :class:`~ledger.domain.commands.Envelope`, and builds the response from what came back. Every
handler is wrapped by :func:`ledger.api.errors.rpc`, so refusals become the statuses of ``docs/errors.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import yaml

from ledger.api import convert as cv
from ledger.api.errors import rpc
from ledger.api.validation import (
    MAX_CONSUME_QUANTITY,
    MAX_DOCUMENT,
    MAX_HOLD_TTL,
    MAX_IDENTITIES,
    MAX_LINES,
    MAX_NOTE,
    Checks,
    check_purchase_shape,
)
from ledger.application.personal import PersonalProfile
from ledger.application.results import CommandResult
from ledger.application.service import LedgerApp, MemberView
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide.context import effective_tier
from ledger.domain.decide.earning import CapPeriod, cap_usage
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    member_pb2,
    program_pb2,
    program_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from policies import OrderLine
from policies.errors import NoPolicyInForce

CAP_PERIODS: dict[CapPeriod, ledger_pb2.CapPeriod.ValueType] = {
    "DAY": ledger_pb2.CAP_PERIOD_DAY,
    "MONTH": ledger_pb2.CAP_PERIOD_MONTH,
}

# ReplayMember pages: at most page_size events (default and maximum here), and a page is closed early once its
# events' estimated size passes REPLAY_PAGE_BYTES, so pages stay far below gRPC's 4 MiB default message limit.
DEFAULT_REPLAY_PAGE = 500
MAX_REPLAY_PAGE = 1000
REPLAY_PAGE_BYTES = 1 << 20
REPLAY_EVENT_OVERHEAD = 512  # bytes of an event besides its payload: ids, hashes, summary, balances, lots

_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _page(token: str, total: int, size: int, field: str = "page_token") -> tuple[int, int, str]:
    """Offset paging over a list in a stable order: (start, end, next token)."""
    if token:
        if not token.isdigit() or not 0 < int(token) <= total:
            raise InvalidCommand(field, "is not a token this listing returned")
        start = int(token)
    else:
        start = 0
    end = min(start + size, total)
    return start, end, (str(end) if end < total else "")


def _document_text(document: str, fmt: int) -> str:
    """The document as the ledger parses it: JSON is checked as JSON first so a YAML-only text is refused."""
    if fmt == common_pb2.DOCUMENT_FORMAT_JSON:
        try:
            json.loads(document)
        except (ValueError, RecursionError) as exc:
            raise InvalidCommand("document", f"document: (document): not a valid JSON document: {exc}") from exc
    return document


def _check_document(c: Checks, document: str, fmt: int) -> None:
    if not document:
        c.fail("document", "is required")
    elif len(document.encode()) > MAX_DOCUMENT:
        c.fail("document", "must be at most 1 MiB")
    c.enum("format", fmt, common_pb2.DocumentFormat)


class ProgramService(program_pb2_grpc.ProgramServiceServicer):
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    def _time_zone(self, program_id: str, at: datetime) -> str:
        try:
            return self.app.program(program_id).policies.in_force_at(at).policy.timezone
        except NoPolicyInForce:
            return self.app.program(program_id).policies.latest.policy.timezone

    @rpc
    def CreateProgram(
        self, request: program_pb2.CreateProgramRequest, context: grpc.ServicerContext
    ) -> program_pb2.CreateProgramResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.text("display_name", request.display_name, required=True)
        _check_document(c, request.document, request.format)
        c.idempotency_key(request.idempotency_key)
        kind = request.clock.kind
        if not request.HasField("clock"):
            c.fail("clock", "is required")
        else:
            c.enum("clock.kind", kind, program_pb2.ClockKind)
            if kind == program_pb2.CLOCK_KIND_TEST:
                c.timestamp("clock.initial_time", request.clock, "initial_time", required=True)
            elif kind == program_pb2.CLOCK_KIND_REAL and request.clock.HasField("initial_time"):
                c.fail("clock.initial_time", "must be unset for the real clock")
        c.context(request)
        c.done()
        existed = request.program_id in self.app.program_ids()
        test_time = cv.optional_datetime(request.clock, "initial_time") if kind == program_pb2.CLOCK_KIND_TEST else None
        state = self.app.create_program(
            request.program_id,
            request.display_name,
            _document_text(request.document, request.format),
            "test" if kind == program_pb2.CLOCK_KIND_TEST else "real",
            test_time,
            request.idempotency_key,
        )
        first = state.policies.versions[0]
        response = program_pb2.CreateProgramResponse(
            program_id=state.program_id,
            display_name=state.name,
            policy_version=first.version,
            clock_kind=program_pb2.CLOCK_KIND_TEST if state.clock == "test" else program_pb2.CLOCK_KIND_REAL,
            time_zone=first.policy.timezone,
            replayed=existed,
        )
        cv.stamp(response.effective_from, first.effective_from)
        cv.stamp(response.now, self.app.now(state.program_id))
        return response

    @rpc
    def PublishPolicy(
        self, request: program_pb2.PublishPolicyRequest, context: grpc.ServicerContext
    ) -> program_pb2.PublishPolicyResponse:
        c = Checks()
        c.program_id(request.program_id)
        _check_document(c, request.document, request.format)
        c.timestamp("effective_from", request, "effective_from")
        c.idempotency_key(request.idempotency_key)
        c.context(request)
        c.done()
        before = self.app.program(request.program_id).policies.latest.version
        published_at = self.app.now(request.program_id)
        pv = self.app.publish_policy(
            request.program_id,
            _document_text(request.document, request.format),
            cv.optional_datetime(request, "effective_from"),
            request.idempotency_key,
        )
        response = program_pb2.PublishPolicyResponse(version=pv.version, replayed=pv.version == before)
        cv.stamp(response.effective_from, pv.effective_from)
        cv.stamp(response.published_at, published_at)
        return response

    @rpc
    def GetPolicy(self, request: program_pb2.GetPolicyRequest, context: grpc.ServicerContext) -> program_pb2.GetPolicyResponse:
        c = Checks()
        c.program_id(request.program_id)
        selector = request.WhichOneof("selector")
        if selector == "version" and request.version < 1:
            c.fail("version", "must be at least 1")
        if selector == "as_of":
            c.timestamp("as_of", request, "as_of")
        c.enum("format", request.format, common_pb2.DocumentFormat, required=False)
        c.done()
        as_of = cv.optional_datetime(request, "as_of") if selector == "as_of" else None
        if as_of is not None:
            first = self.app.program(request.program_id).policies.versions[0]
            if as_of < first.effective_from:
                raise Refusal(
                    "POLICY_NOT_EFFECTIVE_YET",
                    "no policy version was in force at that time",
                    {"occurred_at": cv.rfc3339(as_of), "first_effective_from": cv.rfc3339(first.effective_from)},
                )
        pv, versions = self.app.get_policy(
            request.program_id, request.version if selector == "version" else None, as_of
        )
        document = self.app.policy_document(pv)
        fmt = request.format or common_pb2.DOCUMENT_FORMAT_YAML
        if fmt == common_pb2.DOCUMENT_FORMAT_JSON:
            document = json.dumps(yaml.safe_load(document), ensure_ascii=False, indent=2)
        now = self.app.now(request.program_id)
        try:
            in_force = self.app.program(request.program_id).policies.in_force_at(now).version
        except NoPolicyInForce:
            in_force = 0
        response = program_pb2.GetPolicyResponse(
            program_id=request.program_id, version=pv.version, document=document, format=fmt
        )
        cv.stamp(response.effective_from, pv.effective_from)
        for v in versions:
            info = response.versions.add(version=v.version, in_force=v.version == in_force)
            cv.stamp(info.effective_from, v.effective_from)
        return response

    @rpc
    def AdvanceClock(
        self, request: program_pb2.AdvanceClockRequest, context: grpc.ServicerContext
    ) -> program_pb2.AdvanceClockResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.timestamp("to", request, "to", required=True)
        c.idempotency_key(request.idempotency_key)
        c.context(request)
        c.done()
        to = cv.to_datetime(request.to)
        program = self.app.program(request.program_id)
        if program.clock != "test":
            raise Refusal(
                "NOT_ON_TEST_CLOCK",
                f"program {request.program_id} runs on the real clock",
                {"program_id": request.program_id},
            )
        previous = self.app.now(request.program_id)
        response = program_pb2.AdvanceClockResponse()
        try:
            counts = self.app.advance_clock(request.program_id, to, request.idempotency_key)
        except Refusal as exc:
            if exc.reason == "CLOCK_NOT_FORWARD" and to == previous:
                # Equal to the current time: nothing new falls due.
                cv.stamp(response.previous_time, previous)
                cv.stamp(response.now, previous)
                return response
            raise
        now = counts.get("now") or self.app.now(request.program_id)
        assert isinstance(now, datetime)
        cv.stamp(response.previous_time, previous)
        cv.stamp(response.now, now)

        def n(key: str) -> int:
            value = counts.get(key, 0)
            return value if isinstance(value, int) else 0

        response.activations = n("activations")
        response.expiries = n("expiries")
        response.holds_released = n("holds_released")
        response.reviews = n("reviews")
        # Time-driven tier changes are review downgrades (upgrades happen when growth is recorded).
        response.downgrades = n("tier_changes")
        response.grants = n("grants")
        response.overrides_ended = n("overrides_ended")
        response.memberships_lapsed = n("memberships_lapsed")
        response.members_touched = n("members_ticked")
        response.events_written = n("events_written")
        response.replayed = previous == to
        return response

    @rpc
    def GetClock(self, request: program_pb2.GetClockRequest, context: grpc.ServicerContext) -> program_pb2.GetClockResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.done()
        program = self.app.program(request.program_id)
        now = self.app.now(request.program_id)
        response = program_pb2.GetClockResponse(
            program_id=request.program_id,
            kind=program_pb2.CLOCK_KIND_TEST if program.clock == "test" else program_pb2.CLOCK_KIND_REAL,
            time_zone=self._time_zone(request.program_id, now),
        )
        cv.stamp(response.now, now)
        return response


class _MemberBase:
    def __init__(self, app: LedgerApp) -> None:
        self.app = app

    def _view(self, program_id: str, member_id: str) -> MemberView:
        return self.app.view(program_id, member_id)

    def _tier_after(self, result: CommandResult) -> str:
        changed = [e for e in result.events if isinstance(e, ev.TierChanged)]
        view = self._view(result.program_id, result.member_id)
        if changed and not view.state.override_at(view.now):
            return str(changed[-1].to_tier)
        return cv.current_tier(view.state, view.policy.policy, view.now)

    def _point_value(self, program_id: str, points: int) -> int:
        policy = self.app.program(program_id).policies.in_force_at(self.app.now(program_id)).policy
        return points * policy.redemption.point_value_fen


def _order_lines(request: Any) -> tuple[OrderLine, ...]:
    return tuple(
        OrderLine(line_id=ln.line_id, sku=ln.sku, category=ln.category, quantity=ln.quantity, paid_fen=ln.paid_fen)
        for ln in request.lines
    )


def _line_earning(line: Any, sku: str, category: str) -> common_pb2.LineEarning:
    return common_pb2.LineEarning(
        line_id=line.line_id,
        sku=sku,
        category=category,
        paid_fen=line.paid_fen,
        rate=cv.ratio(line.rate),
        base_points=line.base_points,
        bonus_points=line.bonus_points,
        points=line.points,
    )


class LedgerService(_MemberBase, ledger_pb2_grpc.LedgerServiceServicer):
    @staticmethod
    def _common(c: Checks, request: Any, *, operator_required: bool = False) -> None:
        c.program_id(request.program_id)
        c.idempotency_key(request.idempotency_key)
        c.caller_id("member_id", request.member_id)
        c.context(request, operator_required=operator_required)

    def _run(self, request: Any, command: cmd.MemberCommand, *, business_time: bool = True) -> CommandResult:
        return self.app.execute(
            cv.envelope(request.program_id, command, request.idempotency_key, request.context, business_time=business_time)
        )

    @rpc
    def EnrollMember(
        self, request: ledger_pb2.EnrollMemberRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.EnrollMemberResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.idempotency_key(request.idempotency_key)
        c.caller_id("member_id", request.member_id, required=False)
        c.context(request)
        if len(request.identities) > MAX_IDENTITIES:
            c.fail("identities", f"at most {MAX_IDENTITIES} identities")
        seen: set[tuple[int, str]] = set()
        for i, identity in enumerate(request.identities):
            c.enum(f"identities[{i}].kind", identity.kind, common_pb2.IdentityKind)
            c.text(f"identities[{i}].value", identity.value, required=True)
            if (identity.kind, identity.value) in seen:
                c.fail(f"identities[{i}]", "the same identity is listed twice")
            seen.add((identity.kind, identity.value))
        profile = None
        if request.HasField("profile"):
            p = request.profile
            given = bool(p.birth_month or p.baby_birth_date or p.phone)
            if given and not p.consent:
                c.fail("profile.consent", "must be true when personal data is given")
            c.between("profile.birth_month", p.birth_month, 0, 12)
            if p.baby_birth_date and not _DATE.fullmatch(p.baby_birth_date):
                c.fail("profile.baby_birth_date", "must be a date YYYY-MM-DD")
            if p.phone and not _E164.fullmatch(p.phone):
                c.fail("profile.phone", "must be an E.164 number such as +8613800138000")
            if given:
                profile = PersonalProfile(
                    birth_month=p.birth_month or None,
                    baby_birth_date=p.baby_birth_date or None,
                    phone=p.phone or None,
                    consent=p.consent,
                )
        c.done()
        member_id = request.member_id or (
            "m-" + hashlib.sha256(f"{request.program_id}\x1f{request.idempotency_key}".encode()).hexdigest()[:24]
        )
        identities = [(cv.IDENTITY_KINDS[i.kind], i.value) for i in request.identities]
        result = self.app.enroll(
            request.program_id,
            member_id,
            identities,
            profile,
            request.idempotency_key,
            cv.optional_datetime(request.context, "occurred_at"),
            cv.actor_of(request.context),
        )
        enrolled = cv.first(result.events, ev.MemberEnrolled)
        response = ledger_pb2.EnrollMemberResponse(
            member_id=result.member_id, profile_stored=profile is not None, replayed=result.replayed
        )
        if enrolled is not None:
            response.tier = enrolled.tier
            response.policy_version = enrolled.policy_version
            cv.stamp(response.enrolled_at, enrolled.at)
        return response

    @rpc
    def MergeMembers(
        self, request: ledger_pb2.MergeMembersRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.MergeMembersResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("source_member_id", request.source_member_id)
        if request.member_id and request.member_id == request.source_member_id:
            c.fail("source_member_id", "must differ from member_id")
        c.done()
        result = self._run(request, cmd.MergeMembers(member_id=request.member_id, source_member_id=request.source_member_id))
        absorbed = cv.first(result.events, ev.MemberAbsorbed)
        response = ledger_pb2.MergeMembersResponse(
            member_id=request.member_id,
            source_member_id=request.source_member_id,
            tier_after=self._tier_after(result),
            replayed=result.replayed,
        )
        if absorbed is not None:
            response.points_moved = sum(t.points for t in absorbed.lots)
            response.lots_moved = len(absorbed.lots)
            response.arrears_moved = absorbed.arrears
            response.growth_moved = sum(g.amount for g in absorbed.growth)
            response.entitlements_moved = len(absorbed.entitlement_ids)
            response.identities_moved = len(absorbed.identities)
        return response

    @rpc
    def RecordPurchase(
        self, request: ledger_pb2.RecordPurchaseRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.RecordPurchaseResponse:
        c = Checks()
        c.idempotency_key(request.idempotency_key)
        check_purchase_shape(c, request)
        c.done()
        result = self._run(
            request,
            cmd.RecordPurchase(
                member_id=request.member_id,
                order_id=request.order_id,
                lines=_order_lines(request),
                order_total_fen=request.order_total_fen,
                points_paid=request.points_paid,
            ),
        )
        recorded: ev.PurchaseRecorded | None = cv.first(result.events, ev.PurchaseRecorded)
        response = ledger_pb2.RecordPurchaseResponse(
            member_id=request.member_id, order_id=request.order_id, replayed=result.replayed
        )
        if recorded is None:
            return response
        response.points_earned = recorded.points
        response.growth_earned = recorded.growth
        response.applied_multiplier = recorded.multiplier
        response.applied_multiplier_rule = recorded.multiplier_rule
        response.policy_version = recorded.policy_version
        response.tier_at_sale = recorded.tier
        response.points_paid = recorded.points_paid
        response.lines.extend(_line_earning(ln, ln.sku, ln.category) for ln in recorded.lines)
        response.candidates.extend(common_pb2.MultiplierCandidate(rule=x.rule, multiplier=x.factor) for x in recorded.candidates)
        if recorded.lot is not None:
            response.lot_id = recorded.lot.lot_id
            cv.stamp(response.active_at, recorded.lot.active_at)
            cv.stamp(response.expires_at, recorded.lot.expires_at)
        changed = cv.of_type(result.events, ev.TierChanged)
        response.tier_after = changed[-1].to_tier if changed else recorded.tier
        return response

    @rpc
    def AwardPoints(self, request: ledger_pb2.AwardPointsRequest, context: grpc.ServicerContext) -> ledger_pb2.AwardPointsResponse:
        c = Checks()
        self._common(c, request)
        c.text("behaviour", request.behaviour, required=True)
        c.caller_id("reference", request.reference, required=request.behaviour != "check_in")
        c.done()
        result = self._run(
            request, cmd.AwardPoints(member_id=request.member_id, behaviour=request.behaviour, reference=request.reference)
        )
        awarded: ev.PointsAwarded | None = cv.first(result.events, ev.PointsAwarded)
        response = ledger_pb2.AwardPointsResponse(
            member_id=request.member_id, behaviour=request.behaviour, replayed=result.replayed
        )
        if awarded is not None:
            response.points = awarded.points
            response.growth = awarded.growth
            response.arrears_repaid = awarded.arrears_repaid
            response.cap_group = awarded.cap_group
            response.policy_version = awarded.policy_version
            if awarded.lot is not None:
                response.lot_id = awarded.lot.lot_id
                cv.stamp(response.expires_at, awarded.lot.expires_at)
            view = self._view(request.program_id, request.member_id)
            policy = self.app.program(request.program_id).policies.in_force_at(awarded.at).policy
            for usage in cap_usage(view.state, policy, awarded.cap_group, awarded.at, through=True):
                cap = response.caps.add(
                    period=CAP_PERIODS[usage.period], limit=usage.limit, used=usage.used, remaining=usage.remaining
                )
                cv.stamp(cap.resets_at, usage.resets_at)
        coupon = cv.first(result.events, ev.EntitlementGranted)
        if coupon is not None:
            response.coupon.CopyFrom(cv.granted_entitlement(coupon))
        response.tier_after = self._tier_after(result)
        return response

    @rpc
    def HoldPoints(self, request: ledger_pb2.HoldPointsRequest, context: grpc.ServicerContext) -> ledger_pb2.HoldPointsResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("hold_id", request.hold_id)
        c.amount("points", request.points, low=1)
        c.caller_id("order_id", request.order_id)
        c.amount("order_total_fen", request.order_total_fen, low=1)
        c.between("ttl_seconds", request.ttl_seconds, 0, MAX_HOLD_TTL)
        c.done()
        result = self._run(
            request,
            cmd.HoldPoints(
                member_id=request.member_id,
                hold_id=request.hold_id,
                order_id=request.order_id,
                points=request.points,
                order_total_fen=request.order_total_fen,
                ttl_seconds=request.ttl_seconds or None,
            ),
            business_time=False,
        )
        held: ev.PointsHeld | None = cv.first(result.events, ev.PointsHeld)
        response = ledger_pb2.HoldPointsResponse(
            hold_id=request.hold_id, available_after=max(result.balance.available, 0), replayed=result.replayed
        )
        if held is not None:
            response.held_points = held.points
            response.cash_value_fen = held.value_fen
            response.cap_points = held.cap_points
            response.policy_version = held.policy_version
            response.lots.extend(cv.portions(held.allocations))
            cv.stamp(response.expires_at, held.expires_at)
        return response

    @rpc
    def CommitHold(self, request: ledger_pb2.CommitHoldRequest, context: grpc.ServicerContext) -> ledger_pb2.CommitHoldResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("hold_id", request.hold_id)
        c.amount("points", request.points)
        c.done()
        result = self._run(
            request,
            cmd.CommitHold(member_id=request.member_id, hold_id=request.hold_id, points=request.points or None),
            business_time=False,
        )
        committed: ev.HoldCommitted | None = cv.first(result.events, ev.HoldCommitted)
        response = ledger_pb2.CommitHoldResponse(
            hold_id=request.hold_id, available_after=max(result.balance.available, 0), replayed=result.replayed
        )
        if committed is not None:
            response.order_id = committed.order_id
            response.committed_points = committed.points
            response.cash_value_fen = self._point_value(request.program_id, committed.points)
            response.released_points = committed.released
            response.lots.extend(cv.portions(committed.debits))
        return response

    @rpc
    def ReleaseHold(self, request: ledger_pb2.ReleaseHoldRequest, context: grpc.ServicerContext) -> ledger_pb2.ReleaseHoldResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("hold_id", request.hold_id)
        c.done()
        result = self._run(request, cmd.ReleaseHold(member_id=request.member_id, hold_id=request.hold_id), business_time=False)
        released: ev.HoldReleased | None = cv.first(result.events, ev.HoldReleased)
        return ledger_pb2.ReleaseHoldResponse(
            hold_id=request.hold_id,
            status=ledger_pb2.HOLD_STATUS_RELEASED,
            released_points=released.points if released is not None else 0,
            available_after=max(result.balance.available, 0),
            replayed=result.replayed,
        )

    @rpc
    def RefundPurchase(
        self, request: ledger_pb2.RefundPurchaseRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.RefundPurchaseResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("order_id", request.order_id)
        c.caller_id("refund_id", request.refund_id)
        if request.whole_order == bool(request.lines):
            c.fail("lines", "give exactly one of whole_order = true or a non-empty lines")
        if len(request.lines) > MAX_LINES:
            c.fail("lines", f"a refund has 1..{MAX_LINES} lines")
        seen: set[str] = set()
        for i, line in enumerate(request.lines):
            c.caller_id(f"lines[{i}].line_id", line.line_id)
            if line.line_id and line.line_id in seen:
                c.fail(f"lines[{i}].line_id", f"line {line.line_id!r} named twice")
            seen.add(line.line_id)
            c.amount(f"lines[{i}].refunded_fen", line.refunded_fen, low=1)
        c.done()
        command = cmd.RefundPurchase(
            member_id=request.member_id,
            order_id=request.order_id,
            refund_id=request.refund_id,
            lines=tuple(cmd.RefundLine(line_id=ln.line_id, refunded_fen=ln.refunded_fen) for ln in request.lines),
        )
        try:
            result = self._run(request, command)
        except NotFound as exc:
            if exc.kind == "order line":
                line_id = exc.identifier.rsplit("/", 1)[-1]
                index = next((i for i, ln in enumerate(request.lines) if ln.line_id == line_id), 0)
                raise InvalidCommand(
                    f"lines[{index}].line_id", f"order {request.order_id} has no line {line_id!r}"
                ) from exc
            raise
        refunded: ev.PurchaseRefunded | None = cv.first(result.events, ev.PurchaseRefunded)
        response = ledger_pb2.RefundPurchaseResponse(
            order_id=request.order_id, refund_id=request.refund_id, replayed=result.replayed
        )
        view = self._view(request.program_id, request.member_id)
        if refunded is not None:
            order = view.state.orders.get(request.order_id)
            response.refunded_fen = refunded.refunded_fen
            response.points_taken_back = refunded.points_taken
            response.arrears_created = refunded.arrears_added
            response.points_forgiven = refunded.forgiven
            response.growth_taken_back = refunded.growth_taken
            response.points_returned = refunded.points_returned
            response.policy_version = refunded.policy_version
            response.taken_from.extend(cv.portions(refunded.debits, view.state.lots))
            response.returned_to.extend(cv.portions(refunded.returned, view.state.lots))
            if refunded.relot is not None:
                response.returned_to.append(cv.new_lot_portion(refunded.relot))
            for done in refunded.lines:
                record = order.lines.get(done.line_id) if order is not None else None
                response.lines.add(
                    line_id=done.line_id,
                    refunded_fen=done.refunded_fen,
                    refunded_fen_total=record.refunded_fen if record is not None else done.refunded_fen,
                    points_taken_back=done.points_taken,
                )
        response.tier_after = cv.current_tier(view.state, view.policy.policy, view.now)
        return response

    @rpc
    def AdjustPoints(self, request: ledger_pb2.AdjustPointsRequest, context: grpc.ServicerContext) -> ledger_pb2.AdjustPointsResponse:
        c = Checks()
        self._common(c, request, operator_required=True)
        if request.points == 0:
            c.fail("points", "must not be zero")
        else:
            c.between("points", request.points, -(10**12), 10**12)
        c.text("reason_code", request.reason_code, required=True)
        c.text("note", request.note, required=True, max_len=MAX_NOTE)
        c.done()
        if request.allow_arrears and request.points > 0:
            c.fail("allow_arrears", "applies to a removal (negative points) only")
            c.done()
        result = self._run(
            request,
            cmd.AdjustPoints(
                member_id=request.member_id,
                points=request.points,
                reason_code=request.reason_code,
                note=request.note,
                operator_id=request.context.operator_id,
                allow_arrears=request.allow_arrears,
            ),
        )
        adjusted: ev.PointsAdjusted | None = cv.first(result.events, ev.PointsAdjusted)
        response = ledger_pb2.AdjustPointsResponse(
            member_id=request.member_id,
            points=request.points,
            balance_after=cv.snapshot(result.balance),
            replayed=result.replayed,
        )
        if adjusted is not None:
            response.arrears_repaid = adjusted.arrears_repaid
            response.arrears_created = adjusted.arrears_added
            response.debited.extend(cv.portions(adjusted.debits))
            if adjusted.lot is not None:
                response.lot_id = adjusted.lot.lot_id
                cv.stamp(response.expires_at, adjusted.lot.expires_at)
        return response

    @rpc
    def PurchaseMembership(
        self, request: ledger_pb2.PurchaseMembershipRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.PurchaseMembershipResponse:
        c = Checks()
        self._common(c, request)
        c.text("plan_code", request.plan_code, required=True)
        c.caller_id("membership_id", request.membership_id)
        c.amount("paid_fen", request.paid_fen)
        c.caller_id("order_id", request.order_id, required=False)
        c.done()
        result = self._run(
            request,
            cmd.PurchaseMembership(
                member_id=request.member_id,
                membership_id=request.membership_id,
                plan=request.plan_code,
                paid_fen=request.paid_fen,
            ),
        )
        bought: ev.MembershipPurchased | None = cv.first(result.events, ev.MembershipPurchased)
        view = self._view(request.program_id, request.member_id)
        response = ledger_pb2.PurchaseMembershipResponse(
            renewal=bool(bought is not None and bought.renewal_of),
            policy_version=bought.policy_version if bought is not None else 0,
            tier_after=cv.current_tier(view.state, view.policy.policy, view.now),
            replayed=result.replayed,
        )
        state = view.state.memberships.get(request.membership_id)
        if state is not None:
            response.membership.CopyFrom(cv.membership(state, view.policy.policy))
        response.granted.extend(cv.granted_entitlement(g) for g in cv.of_type(result.events, ev.EntitlementGranted))
        return response

    @rpc
    def CancelMembership(
        self, request: ledger_pb2.CancelMembershipRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.CancelMembershipResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("membership_id", request.membership_id)
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.done()
        result = self._run(
            request,
            cmd.CancelMembership(member_id=request.member_id, membership_id=request.membership_id, reason=request.reason),
        )
        cancelled: ev.MembershipCancelled | None = cv.first(result.events, ev.MembershipCancelled)
        view = self._view(request.program_id, request.member_id)
        response = ledger_pb2.CancelMembershipResponse(
            refund_fen=cancelled.refund_fen if cancelled is not None else 0,
            tier_after=cv.current_tier(view.state, view.policy.policy, view.now),
            replayed=result.replayed,
        )
        state = view.state.memberships.get(request.membership_id)
        if state is not None:
            response.membership.CopyFrom(cv.membership(state, view.policy.policy))
        for revoked in cv.of_type(result.events, ev.EntitlementRevoked):
            ent = view.state.entitlements.get(revoked.entitlement_id)
            if ent is not None:
                response.revoked.append(cv.entitlement(ent, view.policy.policy, view.now))
        return response

    @rpc
    def OverrideTier(self, request: ledger_pb2.OverrideTierRequest, context: grpc.ServicerContext) -> ledger_pb2.OverrideTierResponse:
        c = Checks()
        self._common(c, request, operator_required=True)
        c.text("tier", request.tier, required=True)
        c.enum("kind", request.kind, member_pb2.TierOverrideKind)
        c.timestamp("ends_at", request, "ends_at", required=True)
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.done()
        ends_at = cv.to_datetime(request.ends_at)
        if ends_at <= self.app.now(request.program_id):
            raise InvalidCommand("ends_at", "must be after now")
        result = self._run(
            request,
            cmd.OverrideTier(
                member_id=request.member_id,
                tier=request.tier,
                kind=cv.OVERRIDE_KIND_NAMES[request.kind],
                ends_at=ends_at,
                reason=request.reason,
                operator_id=request.context.operator_id,
            ),
        )
        view = self._view(request.program_id, request.member_id)
        response = ledger_pb2.OverrideTierResponse(
            member_id=request.member_id,
            tier=cv.current_tier(view.state, view.policy.policy, view.now),
            earned_tier=view.state.tier,
            replayed=result.replayed,
        )
        override = view.state.override_at(view.now)
        if override is not None:
            response.override.CopyFrom(cv.tier_override(override))
        return response

    @rpc
    def ConsumeEntitlement(
        self, request: ledger_pb2.ConsumeEntitlementRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.ConsumeEntitlementResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("entitlement_id", request.entitlement_id)
        c.caller_id("order_id", request.order_id)
        c.between("quantity", request.quantity, 0, MAX_CONSUME_QUANTITY)
        c.done()
        quantity = request.quantity or 1
        result = self._run(
            request,
            cmd.ConsumeEntitlement(
                member_id=request.member_id,
                entitlement_id=request.entitlement_id,
                order_id=request.order_id,
                store_id=request.context.store_id,
                quantity=quantity,
            ),
        )
        view = self._view(request.program_id, request.member_id)
        response = ledger_pb2.ConsumeEntitlementResponse(quantity=quantity, replayed=result.replayed)
        ent = view.state.entitlements.get(request.entitlement_id)
        if ent is not None:
            msg = cv.entitlement(ent, view.policy.policy, view.now)
            response.entitlement.CopyFrom(msg)
            response.remaining_this_period = (
                max(msg.quota_per_month - msg.used_this_month, 0) if ent.quota_per_month else -1
            )
            response.remaining_total = max(msg.quota_total - msg.used_total, 0) if ent.quota_total else -1
        return response


class MemberQueryService(_MemberBase, query_pb2_grpc.MemberQueryServiceServicer):
    @staticmethod
    def _member(request: Any) -> None:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        c.done()

    @rpc
    def LookupMember(self, request: query_pb2.LookupMemberRequest, context: grpc.ServicerContext) -> query_pb2.LookupMemberResponse:
        c = Checks()
        c.program_id(request.program_id)
        if not request.HasField("identity"):
            c.fail("identity", "is required")
        else:
            c.enum("identity.kind", request.identity.kind, common_pb2.IdentityKind)
            c.text("identity.value", request.identity.value, required=True)
        c.done()
        member_id = self.app.lookup(request.program_id, cv.IDENTITY_KINDS[request.identity.kind], request.identity.value)
        view = self._view(request.program_id, member_id)
        response = query_pb2.LookupMemberResponse(
            member_id=member_id,
            status=query_pb2.MEMBER_STATUS_MERGED if view.state.merged_into else query_pb2.MEMBER_STATUS_ACTIVE,
            tier=cv.current_tier(view.state, view.policy.policy, view.now),
            balance=cv.balance(view.state, view.now),
        )
        cv.stamp(response.enrolled_at, view.state.enrolled_at)
        return response

    @rpc
    def QuotePurchase(self, request: query_pb2.QuotePurchaseRequest, context: grpc.ServicerContext) -> query_pb2.QuotePurchaseResponse:
        c = Checks()
        check_purchase_shape(c, request, order_required=False)
        c.done()
        occurred_at = cv.optional_datetime(request.context, "occurred_at")
        command = cmd.RecordPurchase(
            member_id=request.member_id,
            order_id=request.order_id,
            lines=_order_lines(request),
            order_total_fen=request.order_total_fen,
            points_paid=request.points_paid,
        )
        view = self._view(request.program_id, request.member_id)
        at = occurred_at or view.now
        policies = self.app.program(request.program_id).policies
        if at < policies.versions[0].effective_from:
            raise Refusal(
                "POLICY_NOT_EFFECTIVE_YET",
                "no policy version was in force at the business time",
                {"occurred_at": cv.rfc3339(at), "first_effective_from": cv.rfc3339(policies.versions[0].effective_from)},
            )
        pv = policies.in_force_at(at)
        if view.state.merged_into:
            raise Refusal(
                "MEMBER_MERGED",
                f"member {request.member_id} was merged into {view.state.merged_into}",
                {"member_id": request.member_id, "merged_into": view.state.merged_into},
            )
        window = self.app.program(request.program_id).policies.in_force_at(view.now).policy.offline_window_days
        earliest = view.now - timedelta(days=window)
        if at < earliest:
            raise Refusal(
                "OUTSIDE_OFFLINE_WINDOW",
                f"business time is more than {window} days before now",
                {"occurred_at": cv.rfc3339(at), "now": cv.rfc3339(view.now), "window_days": window,
                 "earliest_allowed": cv.rfc3339(earliest)},
            )
        earning = self.app.quote(request.program_id, command, occurred_at)
        tier_at_sale = effective_tier(view.state, pv.policy, at)
        response = query_pb2.QuotePurchaseResponse(
            member_id=request.member_id,
            points_earned=earning.points,
            growth_earned=earning.growth,
            applied_multiplier=cv.ratio(earning.multiplier),
            applied_multiplier_rule=earning.multiplier_rule,
            policy_version=pv.version,
            tier_at_sale=tier_at_sale,
            tier_after=tier_at_sale,
            already_recorded=bool(request.order_id) and request.order_id in view.state.orders,
        )
        for line, src in zip(earning.lines, request.lines, strict=True):
            response.lines.append(_line_earning(line, src.sku, src.category))
        response.candidates.extend(
            common_pb2.MultiplierCandidate(rule=r, multiplier=cv.ratio(f)) for r, f in earning.candidates
        )
        cv.stamp(response.active_at, earning.active_at)
        cv.stamp(response.expires_at, earning.expires_at)
        return response

    @rpc
    def GetBalance(self, request: query_pb2.GetBalanceRequest, context: grpc.ServicerContext) -> query_pb2.GetBalanceResponse:
        self._member(request)
        view = self._view(request.program_id, request.member_id)
        return query_pb2.GetBalanceResponse(balance=cv.balance(view.state, view.now))

    @rpc
    def ListLots(self, request: query_pb2.ListLotsRequest, context: grpc.ServicerContext) -> query_pb2.ListLotsResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        for i, s in enumerate(request.statuses):
            c.enum(f"statuses[{i}]", s, member_pb2.LotStatus)
        c.done()
        view = self._view(request.program_id, request.member_id)
        wanted = set(request.statuses)
        lots = [
            lot for lot in sorted(view.state.lots.values(), key=lambda lot: lot.order_key())
            if not wanted or cv.lot_status(lot) in wanted
        ]
        start, end, token = _page(request.page_token, len(lots), size)
        return query_pb2.ListLotsResponse(
            lots=[cv.lot(lot) for lot in lots[start:end]], next_page_token=token, version=view.state.version
        )

    @rpc
    def GetTierState(self, request: query_pb2.GetTierStateRequest, context: grpc.ServicerContext) -> query_pb2.GetTierStateResponse:
        self._member(request)
        view = self._view(request.program_id, request.member_id)
        return query_pb2.GetTierStateResponse(tier_state=cv.tier_state(view.state, view.policy.policy, view.now))

    @rpc
    def ListEntitlements(
        self, request: query_pb2.ListEntitlementsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListEntitlementsResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        for i, s in enumerate(request.statuses):
            c.enum(f"statuses[{i}]", s, member_pb2.EntitlementStatus)
        c.done()
        view = self._view(request.program_id, request.member_id)
        wanted = set(request.statuses)
        items = [
            cv.entitlement(ent, view.policy.policy, view.now)
            for ent in sorted(
                view.state.entitlements.values(), key=lambda e: (e.granted_at, e.entitlement_id), reverse=True
            )
        ]
        items = [e for e in items if not wanted or e.status in wanted]
        start, end, token = _page(request.page_token, len(items), size)
        return query_pb2.ListEntitlementsResponse(entitlements=items[start:end], next_page_token=token)

    @rpc
    def ListHistory(self, request: query_pb2.ListHistoryRequest, context: grpc.ServicerContext) -> query_pb2.ListHistoryResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        size = c.page_size(request.page_size)
        c.done()
        self.app.program(request.program_id)
        entries = list(self.app.replay(request.program_id, request.member_id))
        # The token is the number of events older than the page (continue at versions <= token), so later events never shift later pages.
        if request.page_token:
            if not request.page_token.isdigit() or not 0 < int(request.page_token) <= len(entries):
                raise InvalidCommand("page_token", "is not a token this listing returned")
            end = int(request.page_token)
        else:
            end = len(entries)
        start = max(0, end - size)
        response = query_pb2.ListHistoryResponse(next_page_token=str(start) if start > 0 else "")
        for index in range(end - 1, start - 1, -1):
            e = entries[index]
            entry = response.entries.add(
                version=e.stored.version,
                event_id=e.stored.event_id,
                event_type=e.stored.type,
                summary=cv.summary(e.event),
                points_delta=cv.net_points(e.after) - cv.net_points(e.before),
                growth_delta=cv.growth_delta(e.event),
                balance_after=cv.snapshot(e.after),
                tier_after=e.tier_after,
                order_id=cv.order_of(e.event),
                policy_version=e.stored.policy_version or 0,
                actor=cv.actor_message(e.stored.actor),
            )
            cv.stamp(entry.occurred_at, e.stored.occurred_at)
            cv.stamp(entry.recorded_at, e.stored.recorded_at)
        return response


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
                rule=cv.rule(event),
                summary=cv.summary(event),
                idempotency_key=s.idempotency_key or "",
                correlation_id=s.correlation_id or "",
                causation_id=s.causation_id or "",
                payload_json=payload,
                points_delta=cv.net_points(after) - cv.net_points(before),
                growth_delta=cv.growth_delta(event),
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
        yield audit_pb2.VerifyProgramResponse(summary=summary)
