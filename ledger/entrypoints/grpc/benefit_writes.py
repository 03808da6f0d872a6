"""The benefit writes of ``loyalty.v1.LedgerService``: paid memberships, tier overrides, benefit write-offs."""

from __future__ import annotations

import re
from typing import Any

import grpc

from ledger.application.results import CommandResult
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain import queries
from ledger.domain.errors import InvalidCommand
from ledger.domain.standing import CapPeriod
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.common import MemberBase
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import (
    MAX_CONSUME_QUANTITY,
    MAX_NOTE,
    Checks,
)
from loyalty.v1 import (
    ledger_pb2,
    member_pb2,
)

CAP_PERIODS: dict[CapPeriod, ledger_pb2.CapPeriod.ValueType] = {
    "DAY": ledger_pb2.CAP_PERIOD_DAY,
    "MONTH": ledger_pb2.CAP_PERIOD_MONTH,
}


_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")


_E164 = re.compile(r"\+[1-9]\d{6,14}")


class BenefitWrites(MemberBase):
    """Handlers :class:`~ledger.entrypoints.grpc.ledger_service.LedgerService` inherits; ``_common`` and ``_run``
    check a member write's common fields and execute its command."""

    @staticmethod
    def _common(c: Checks, request: Any, *, operator_required: bool = False) -> None:
        c.program_id(request.program_id)
        c.idempotency_key(request.idempotency_key)
        c.caller_id("member_id", request.member_id)
        c.context(request, operator_required=operator_required)

    def _run(
        self,
        request: Any,
        command: cmd.MemberCommand,
        *,
        business_time: bool = True,
        with_state: bool = False,
    ) -> CommandResult:
        """Execute the request's command; ``with_state`` when the answer needs the member's state after it."""
        return self.app.execute(
            cv.envelope(
                request.program_id,
                command,
                request.idempotency_key,
                request.context,
                business_time=business_time,
            ),
            with_state=with_state,
        )

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
            with_state=True,
        )
        bought: ev.MembershipPurchased | None = cv.first(result.events, ev.MembershipPurchased)
        view = self.app.after(result)
        response = ledger_pb2.PurchaseMembershipResponse(
            renewal=bool(bought is not None and bought.renewal_of),
            policy_version=bought.policy_version if bought is not None else 0,
            tier_after=queries.current_tier(view.state, view.policy.policy, view.now),
            replayed=result.replayed,
            member_version=result.version,
        )
        state = view.state.memberships.get(request.membership_id)
        if state is not None:
            response.membership.CopyFrom(cv.membership(state, view.policy.policy))
        response.granted.extend(
            cv.granted_entitlement(g) for g in cv.of_type(result.events, ev.EntitlementGranted)
        )
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
            cmd.CancelMembership(
                member_id=request.member_id, membership_id=request.membership_id, reason=request.reason
            ),
            with_state=True,
        )
        cancelled: ev.MembershipCancelled | None = cv.first(result.events, ev.MembershipCancelled)
        view = self.app.after(result)
        response = ledger_pb2.CancelMembershipResponse(
            refund_fen=cancelled.refund_fen if cancelled is not None else 0,
            tier_after=queries.current_tier(view.state, view.policy.policy, view.now),
            replayed=result.replayed,
            member_version=result.version,
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
    def OverrideTier(
        self, request: ledger_pb2.OverrideTierRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.OverrideTierResponse:
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
            with_state=True,
        )
        view = self.app.after(result)
        response = ledger_pb2.OverrideTierResponse(
            member_id=request.member_id,
            tier=queries.current_tier(view.state, view.policy.policy, view.now),
            earned_tier=view.state.tier,
            replayed=result.replayed,
            member_version=result.version,
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
            with_state=True,
        )
        view = self.app.after(result)
        response = ledger_pb2.ConsumeEntitlementResponse(
            quantity=quantity, replayed=result.replayed, member_version=result.version
        )
        ent = view.state.entitlements.get(request.entitlement_id)
        if ent is not None:
            msg = cv.entitlement(ent, view.policy.policy, view.now)
            response.entitlement.CopyFrom(msg)
            response.remaining_this_period = (
                max(msg.quota_per_month - msg.used_this_month, 0) if ent.quota_per_month else -1
            )
            response.remaining_total = max(msg.quota_total - msg.used_total, 0) if ent.quota_total else -1
        return response
