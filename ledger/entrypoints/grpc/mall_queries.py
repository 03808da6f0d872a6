"""The points-mall queries of ``loyalty.v1.MemberQueryService``: the catalog (for a member) and their exchanges."""

from __future__ import annotations

import grpc

from ledger.application.mall import catalog
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.common import MemberBase
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.validation import Checks
from loyalty.v1 import query_pb2


class MallQueries(MemberBase):
    """Handlers :class:`~ledger.entrypoints.grpc.query_service.MemberQueryService` inherits."""

    @rpc
    def ListRewards(
        self, request: query_pb2.ListRewardsRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListRewardsResponse:
        c = Checks()
        c.program_id(request.program_id)
        if request.member_id:
            c.caller_id("member_id", request.member_id)
        c.done()
        if request.member_id:
            view = self._view(request.program_id, request.member_id)
            offers = catalog(self.app, request.program_id, view.now, view.state)
        else:
            offers = catalog(self.app, request.program_id, self.app.now(request.program_id))
        response = query_pb2.ListRewardsResponse()
        for offer in offers:
            r = offer.reward
            msg = response.rewards.add(
                reward_id=offer.reward_id,
                name=r.name,
                price_points=r.price_points,
                price_fen=r.price_fen,
                benefit_code=r.benefit,
                stock_left=-1 if offer.stock_left is None else max(offer.stock_left, 0),
                min_tier=r.min_tier or "",
                limit_count=r.limit.count if r.limit else 0,
                limit_period=r.limit.per if r.limit else "",
                allowed=bool(request.member_id) and offer.reason is None,
                refusal_reason=offer.reason or "",
                refusal_message=offer.message,
            )
            cv.stamp(msg.sale_starts_at, r.sale_starts_at)
            cv.stamp(msg.sale_ends_at, r.sale_ends_at)
        return response

    @rpc
    def ListExchanges(
        self, request: query_pb2.ListExchangesRequest, context: grpc.ServicerContext
    ) -> query_pb2.ListExchangesResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        c.min_version(request.min_version)
        c.done()
        view = self.app.exchanges_view(request.program_id, request.member_id, request.min_version)
        response = query_pb2.ListExchangesResponse()
        for x in sorted(view.state.exchanges.values(), key=lambda x: (x.at, x.exchange_id), reverse=True):
            msg = response.exchanges.add(
                exchange_id=x.exchange_id,
                reward_id=x.reward_id,
                name=x.reward_name,
                points=x.points,
                cash_fen=x.cash_fen,
                cancel_reason=x.cancel_reason or "",
            )
            cv.stamp(msg.exchanged_at, x.at)
            cv.stamp(msg.cancelled_at, x.cancelled_at)
            ent = view.state.entitlements.get(x.entitlement_id)
            if ent is not None:
                msg.entitlement.CopyFrom(cv.entitlement(ent, view.policy.policy, view.now))
        return response
