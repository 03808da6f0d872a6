"""The client's calls to the points mall: exchanges, their cancellation, stock and the catalog."""

from __future__ import annotations

from clients.python.connection import LedgerConnection
from loyalty.v1 import common_pb2, ledger_pb2, query_pb2


class MallCalls(LedgerConnection):
    """Exchange points for rewards, cancel exchanges, adjust stock, list rewards and exchanges."""

    def exchange_points(
        self,
        member_id: str,
        exchange_id: str,
        reward_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.ExchangePointsResponse:
        """Exchange points for one unit of a reward of the points mall; a retry with the same key is answered once."""
        req = ledger_pb2.ExchangePointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            exchange_id=exchange_id,
            reward_id=reward_id,
        )
        return self._call(lambda t: self.ledger.ExchangePoints(req, timeout=t))

    def cancel_exchange(
        self,
        member_id: str,
        exchange_id: str,
        reason: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CancelExchangeResponse:
        """Cancel an unused exchange: its points back into their lots, its unit back to stock."""
        req = ledger_pb2.CancelExchangeRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            exchange_id=exchange_id,
            reason=reason,
        )
        return self._call(lambda t: self.ledger.CancelExchange(req, timeout=t))

    def adjust_stock(
        self, reward_id: str, units: int, reason: str, operator_id: str, *, idempotency_key: str | None = None
    ) -> ledger_pb2.AdjustStockResponse:
        """An operator adds (positive) or removes (negative) units of a reward's stock, with a reason."""
        req = ledger_pb2.AdjustStockRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            reward_id=reward_id,
            units=units,
            reason=reason,
        )
        return self._call(lambda t: self.ledger.AdjustStock(req, timeout=t))

    def list_rewards(self, member_id: str = "") -> list[query_pb2.RewardOffer]:
        """The points mall's catalog with the stock left; with ``member_id``, what that member may exchange now
        (``allowed``) and, when not, why (``refusal_reason``)."""
        req = query_pb2.ListRewardsRequest(program_id=self.program_id, member_id=member_id)
        return list(self._call(lambda t: self.query.ListRewards(req, timeout=t)).rewards)

    def list_exchanges(self, member_id: str, *, min_version: int = 0) -> list[query_pb2.ExchangeRecord]:
        """The member's points-mall exchanges, newest first."""
        req = query_pb2.ListExchangesRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return list(self._call(lambda t: self.query.ListExchanges(req, timeout=t)).exchanges)
