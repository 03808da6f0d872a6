"""The points-mall writes of ``loyalty.v1.LedgerService``: exchanging points for a reward, cancelling an exchange."""

from __future__ import annotations

import grpc

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.stock import MAX_STOCK_ADJUSTMENT
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.benefit_writes import BenefitWrites
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import MAX_NOTE, Checks
from loyalty.v1 import ledger_pb2


class MallWrites(BenefitWrites):
    """Handlers :class:`~ledger.entrypoints.grpc.ledger_service.LedgerService` inherits."""

    @rpc
    def ExchangePoints(
        self, request: ledger_pb2.ExchangePointsRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.ExchangePointsResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("exchange_id", request.exchange_id)
        c.caller_id("reward_id", request.reward_id)
        c.done()
        result = self._run(
            request,
            cmd.ExchangePoints(
                member_id=request.member_id, exchange_id=request.exchange_id, reward_id=request.reward_id
            ),
            with_state=True,
        )
        view = self.app.after(result)
        response = ledger_pb2.ExchangePointsResponse(
            member_id=request.member_id,
            exchange_id=request.exchange_id,
            reward_id=request.reward_id,
            balance_after=cv.snapshot(result.balance),
            replayed=result.replayed,
            member_version=result.version,
        )
        exchanged: ev.PointsExchanged | None = cv.first(result.events, ev.PointsExchanged)
        if exchanged is not None:
            response.points = exchanged.points
            response.cash_fen = exchanged.cash_fen
            response.debited.extend(cv.portions(exchanged.debits, view.state.lots))
            ent = view.state.entitlements.get(exchanged.entitlement_id)
            if ent is not None:
                response.entitlement.CopyFrom(cv.entitlement(ent, view.policy.policy, view.now))
        return response

    @rpc
    def AdjustStock(
        self, request: ledger_pb2.AdjustStockRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.AdjustStockResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.idempotency_key(request.idempotency_key)
        c.caller_id("reward_id", request.reward_id)
        c.context(request, operator_required=True)
        if request.units == 0:
            c.fail("units", "must not be zero")
        else:
            c.between("units", request.units, -MAX_STOCK_ADJUSTMENT, MAX_STOCK_ADJUSTMENT)
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.done()
        result = self._run(
            request,
            cmd.AdjustStock(
                reward_id=request.reward_id,
                units=request.units,
                reason=request.reason,
                operator_id=request.context.operator_id,
            ),
            business_time=False,
        )
        return ledger_pb2.AdjustStockResponse(
            reward_id=request.reward_id,
            units=request.units,
            stock_left=int(result.extra.get("stock_left", 0)),
            replayed=result.replayed,
            stock_version=result.version,
        )

    @rpc
    def CancelExchange(
        self, request: ledger_pb2.CancelExchangeRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.CancelExchangeResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("exchange_id", request.exchange_id)
        c.text("reason", request.reason, required=True, max_len=MAX_NOTE)
        c.done()
        result = self._run(
            request,
            cmd.CancelExchange(
                member_id=request.member_id, exchange_id=request.exchange_id, reason=request.reason
            ),
            with_state=True,
        )
        view = self.app.after(result)
        response = ledger_pb2.CancelExchangeResponse(
            member_id=request.member_id,
            exchange_id=request.exchange_id,
            balance_after=cv.snapshot(result.balance),
            replayed=result.replayed,
            member_version=result.version,
        )
        cancelled: ev.ExchangeCancelled | None = cv.first(result.events, ev.ExchangeCancelled)
        if cancelled is not None:
            response.points_returned = cancelled.points_returned
            response.returned.extend(cv.portions(cancelled.returned, view.state.lots))
            response.arrears_repaid = cancelled.arrears_repaid
            if cancelled.relot is not None:
                response.relot_lot_id = cancelled.relot.lot_id
                cv.stamp(response.relot_expires_at, cancelled.relot.expires_at)
        return response
