"""The family-account query of ``loyalty.v1.MemberQueryService``: the household a member is in."""

from __future__ import annotations

import grpc

from ledger.domain.errors import Refusal
from ledger.domain.standing import household_standing
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.mall_queries import MallQueries
from ledger.entrypoints.grpc.validation import Checks
from loyalty.v1 import query_pb2


class HouseholdQueries(MallQueries):
    """Handlers :class:`~ledger.entrypoints.grpc.query_service.MemberQueryService` inherits."""

    @rpc
    def GetHousehold(
        self, request: query_pb2.GetHouseholdRequest, context: grpc.ServicerContext
    ) -> query_pb2.GetHouseholdResponse:
        c = Checks()
        c.program_id(request.program_id)
        c.caller_id("member_id", request.member_id)
        c.min_version(request.min_version)
        c.done()
        view, owner = self.app.household_views(request.program_id, request.member_id, request.min_version)
        owner_id = view.state.household_of
        if owner is None or owner_id is None:
            raise Refusal(
                "NOT_IN_HOUSEHOLD",
                f"member {request.member_id} is in no household",
                {"member_id": request.member_id},
            )
        standing = household_standing(view.state, view.policy.policy, view.now)
        return query_pb2.GetHouseholdResponse(
            owner_member_id=owner_id,
            member_ids=owner.state.household_members,
            max_members=view.policy.policy.household.max_members,
            transfer_left_this_month=standing.left_this_month,
            per_transfer_max=standing.per_transfer_max,
            owner_version=owner.state.version,
        )
