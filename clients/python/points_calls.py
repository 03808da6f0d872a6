"""The client's calls that earn and spend points: purchases, awards, adjustments, holds and refunds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from clients.python.connection import LedgerConnection
from loyalty.v1 import common_pb2, ledger_pb2


class PointsCalls(LedgerConnection):
    """Record purchases and awards, adjust points, hold, commit and release points, refund purchases."""

    def record_purchase(
        self,
        member_id: str,
        order_id: str,
        lines: Iterable[ledger_pb2.OrderLine],
        order_total_fen: int = 0,
        occurred_at: datetime | None = None,
        *,
        points_paid: int = 0,
        hold_id: str = "",
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        store_id: str = "",
        terminal_id: str = "",
        idempotency_key: str | None = None,
    ) -> ledger_pb2.RecordPurchaseResponse:
        req = ledger_pb2.RecordPurchaseRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, occurred_at, store_id, terminal_id),
            member_id=member_id,
            order_id=order_id,
            lines=list(lines),
            order_total_fen=order_total_fen,
            points_paid=points_paid,
            hold_id=hold_id,
        )
        return self._call(lambda t: self.ledger.RecordPurchase(req, timeout=t))

    def award(
        self,
        member_id: str,
        behaviour: str,
        reference: str = "",
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_APP,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.AwardPointsResponse:
        req = ledger_pb2.AwardPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            behaviour=behaviour,
            reference=reference,
        )
        return self._call(lambda t: self.ledger.AwardPoints(req, timeout=t))

    def adjust_points(
        self,
        member_id: str,
        points: int,
        reason_code: str,
        operator_id: str,
        note: str,
        *,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.AdjustPointsResponse:
        """An operator's correction; the server requires a ``note`` saying why (it stays in the member's history)."""
        req = ledger_pb2.AdjustPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            member_id=member_id,
            points=points,
            reason_code=reason_code,
            note=note,
        )
        return self._call(lambda t: self.ledger.AdjustPoints(req, timeout=t))

    def hold_points(
        self,
        member_id: str,
        hold_id: str,
        points: int,
        order_id: str,
        order_total_fen: int,
        *,
        ttl_seconds: int = 0,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        store_id: str = "",
        terminal_id: str = "",
        idempotency_key: str | None = None,
    ) -> ledger_pb2.HoldPointsResponse:
        req = ledger_pb2.HoldPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None, store_id, terminal_id),
            member_id=member_id,
            hold_id=hold_id,
            points=points,
            order_id=order_id,
            order_total_fen=order_total_fen,
            ttl_seconds=ttl_seconds,
        )
        return self._call(lambda t: self.ledger.HoldPoints(req, timeout=t))

    def commit_hold(
        self,
        member_id: str,
        hold_id: str,
        points: int = 0,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CommitHoldResponse:
        req = ledger_pb2.CommitHoldRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            hold_id=hold_id,
            points=points,
        )
        return self._call(lambda t: self.ledger.CommitHold(req, timeout=t))

    def release_hold(
        self,
        member_id: str,
        hold_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.ReleaseHoldResponse:
        req = ledger_pb2.ReleaseHoldRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            hold_id=hold_id,
        )
        return self._call(lambda t: self.ledger.ReleaseHold(req, timeout=t))

    def refund_purchase(
        self,
        member_id: str,
        order_id: str,
        refund_id: str,
        *,
        whole_order: bool = True,
        lines: Iterable[ledger_pb2.RefundLine] = (),
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_POS,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.RefundPurchaseResponse:
        req = ledger_pb2.RefundPurchaseRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            order_id=order_id,
            refund_id=refund_id,
            whole_order=whole_order,
            lines=list(lines),
        )
        return self._call(lambda t: self.ledger.RefundPurchase(req, timeout=t))
