"""``loyalty.v1.LedgerService``: the points writes (purchase, award, hold, commit, release, refund, adjust), request to
command, result to response; the service's other writes come from the classes it inherits (member, benefit, mall,
household writes)."""

from __future__ import annotations

import grpc

from ledger.application.results import CommandResult
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain import queries
from ledger.domain.errors import InvalidCommand, NotFound
from ledger.domain.standing import CapPeriod, cap_usage
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.common import line_earning, order_lines
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.member_writes import MemberWrites
from ledger.entrypoints.grpc.validation import (
    MAX_HOLD_TTL,
    MAX_LINES,
    MAX_NOTE,
    Checks,
    check_purchase_shape,
)
from loyalty.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
)

CAP_PERIODS: dict[CapPeriod, ledger_pb2.CapPeriod.ValueType] = {
    "DAY": ledger_pb2.CAP_PERIOD_DAY,
    "MONTH": ledger_pb2.CAP_PERIOD_MONTH,
}


class LedgerService(MemberWrites, ledger_pb2_grpc.LedgerServiceServicer):
    """Points writes here; enrolment, merging and erasure in :class:`MemberWrites`; paid memberships, tier
    overrides and benefit write-offs in :class:`BenefitWrites`; the points mall in :class:`MallWrites`; family
    accounts in :class:`HouseholdWrites`."""

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
                lines=order_lines(request),
                order_total_fen=request.order_total_fen,
                points_paid=request.points_paid,
                hold_id=request.hold_id,
            ),
        )
        recorded: ev.PurchaseRecorded | None = cv.first(result.events, ev.PurchaseRecorded)
        response = ledger_pb2.RecordPurchaseResponse(
            member_id=request.member_id,
            order_id=request.order_id,
            replayed=result.replayed,
            member_version=result.version,
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
        response.lines.extend(line_earning(ln, ln.sku, ln.category) for ln in recorded.lines)
        response.candidates.extend(
            common_pb2.MultiplierCandidate(rule=x.rule, multiplier=x.factor) for x in recorded.candidates
        )
        if recorded.lot is not None:
            response.lot_id = recorded.lot.lot_id
            cv.stamp(response.active_at, recorded.lot.active_at)
            cv.stamp(response.expires_at, recorded.lot.expires_at)
        changed = cv.of_type(result.events, ev.TierChanged)
        response.tier_after = changed[-1].to_tier if changed else recorded.tier
        return response

    @rpc
    def AwardPoints(
        self, request: ledger_pb2.AwardPointsRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.AwardPointsResponse:
        c = Checks()
        self._common(c, request)
        c.text("behaviour", request.behaviour, required=True)
        c.caller_id("reference", request.reference, required=False)  # whether one is needed: the behaviour's rule
        c.done()
        result = self._run(
            request,
            cmd.AwardPoints(
                member_id=request.member_id, behaviour=request.behaviour, reference=request.reference
            ),
            with_state=True,
        )
        awarded: ev.PointsAwarded | None = cv.first(result.events, ev.PointsAwarded)
        response = ledger_pb2.AwardPointsResponse(
            member_id=request.member_id,
            behaviour=request.behaviour,
            replayed=result.replayed,
            member_version=result.version,
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
            view = self.app.after(result)
            policy = self.app.program(request.program_id).policies.in_force_at(awarded.at).policy
            for usage in cap_usage(view.state, policy, awarded.cap_group, awarded.at, through=True):
                cap = response.caps.add(
                    period=CAP_PERIODS[usage.period],
                    limit=usage.limit,
                    used=usage.used,
                    remaining=usage.remaining,
                )
                cv.stamp(cap.resets_at, usage.resets_at)
        coupon = cv.first(result.events, ev.EntitlementGranted)
        if coupon is not None:
            response.coupon.CopyFrom(cv.granted_entitlement(coupon))
        response.tier_after = self._tier_after(result)
        return response

    @rpc
    def HoldPoints(
        self, request: ledger_pb2.HoldPointsRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.HoldPointsResponse:
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
            hold_id=request.hold_id,
            available_after=max(result.balance.available, 0),
            replayed=result.replayed,
            member_version=result.version,
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
    def CommitHold(
        self, request: ledger_pb2.CommitHoldRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.CommitHoldResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("hold_id", request.hold_id)
        c.amount("points", request.points)
        c.done()
        result = self._run(
            request,
            cmd.CommitHold(
                member_id=request.member_id, hold_id=request.hold_id, points=request.points or None
            ),
            business_time=False,
        )
        committed: ev.HoldCommitted | None = cv.first(result.events, ev.HoldCommitted)
        response = ledger_pb2.CommitHoldResponse(
            hold_id=request.hold_id,
            available_after=max(result.balance.available, 0),
            replayed=result.replayed,
            member_version=result.version,
        )
        if committed is not None:
            response.order_id = committed.order_id
            response.committed_points = committed.points
            response.cash_value_fen = self._point_value(request.program_id, committed.points)
            response.released_points = committed.released
            response.lots.extend(cv.portions(committed.debits))
        return response

    @rpc
    def ReleaseHold(
        self, request: ledger_pb2.ReleaseHoldRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.ReleaseHoldResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("hold_id", request.hold_id)
        c.done()
        result = self._run(
            request,
            cmd.ReleaseHold(member_id=request.member_id, hold_id=request.hold_id),
            business_time=False,
        )
        released: ev.HoldReleased | None = cv.first(result.events, ev.HoldReleased)
        return ledger_pb2.ReleaseHoldResponse(
            hold_id=request.hold_id,
            status=ledger_pb2.HOLD_STATUS_RELEASED,
            released_points=released.points if released is not None else 0,
            available_after=max(result.balance.available, 0),
            replayed=result.replayed,
            member_version=result.version,
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
            lines=tuple(
                cmd.RefundLine(line_id=ln.line_id, refunded_fen=ln.refunded_fen) for ln in request.lines
            ),
        )
        try:
            result = self._run(request, command, with_state=True)
        except NotFound as exc:
            if exc.kind == "order line":
                line_id = exc.identifier.rsplit("/", 1)[-1]
                index = next((i for i, ln in enumerate(request.lines) if ln.line_id == line_id), 0)
                raise InvalidCommand(
                    f"lines[{index}].line_id", f"order {request.order_id} has no line {line_id!r}"
                ) from exc
            raise
        return self._refund_response(request, result)

    def _refund_response(
        self, request: ledger_pb2.RefundPurchaseRequest, result: CommandResult
    ) -> ledger_pb2.RefundPurchaseResponse:
        """A refund's answer: what it took back, forgave and returned, line by line, and the tier after it."""
        refunded: ev.PurchaseRefunded | None = cv.first(result.events, ev.PurchaseRefunded)
        response = ledger_pb2.RefundPurchaseResponse(
            order_id=request.order_id,
            refund_id=request.refund_id,
            replayed=result.replayed,
            member_version=result.version,
        )
        view = self.app.after(result)
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
        response.tier_after = queries.current_tier(view.state, view.policy.policy, view.now)
        return response

    @rpc
    def AdjustPoints(
        self, request: ledger_pb2.AdjustPointsRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.AdjustPointsResponse:
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
            member_version=result.version,
        )
        if adjusted is not None:
            response.arrears_repaid = adjusted.arrears_repaid
            response.arrears_created = adjusted.arrears_added
            response.debited.extend(cv.portions(adjusted.debits))
            if adjusted.lot is not None:
                response.lot_id = adjusted.lot.lot_id
                cv.stamp(response.expires_at, adjusted.lot.expires_at)
        return response
