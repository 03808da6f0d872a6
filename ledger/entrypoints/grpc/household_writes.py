"""The family-account writes of ``loyalty.v1.LedgerService``: opening a household, joining, leaving, transfers."""

from __future__ import annotations

from datetime import datetime

import grpc

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.grpc.errors import rpc
from ledger.entrypoints.grpc.mall_writes import MallWrites
from ledger.entrypoints.grpc.validation import Checks
from loyalty.v1 import ledger_pb2

MAX_TRANSFER_POINTS = 1_000_000_000
"""The most points a transfer request may name (the policy's limits are far lower)."""


class HouseholdWrites(MallWrites):
    """Handlers :class:`~ledger.entrypoints.grpc.ledger_service.LedgerService` inherits."""

    @rpc
    def CreateHousehold(
        self, request: ledger_pb2.CreateHouseholdRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.CreateHouseholdResponse:
        c = Checks()
        self._common(c, request)
        c.done()
        result = self._run(request, cmd.CreateHousehold(member_id=request.member_id), business_time=False)
        created: ev.HouseholdCreated | None = cv.first(result.events, ev.HouseholdCreated)
        return ledger_pb2.CreateHouseholdResponse(
            member_id=request.member_id,
            max_members=created.max_members if created is not None else 0,
            replayed=result.replayed,
            member_version=result.version,
        )

    @rpc
    def JoinHousehold(
        self, request: ledger_pb2.JoinHouseholdRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.JoinHouseholdResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("owner_member_id", request.owner_member_id)
        if request.member_id and request.member_id == request.owner_member_id:
            c.fail("owner_member_id", "must differ from member_id")
        c.done()
        result = self._run(
            request,
            cmd.JoinHousehold(member_id=request.member_id, owner_member_id=request.owner_member_id),
            business_time=False,
        )
        return ledger_pb2.JoinHouseholdResponse(
            member_id=request.member_id,
            owner_member_id=request.owner_member_id,
            replayed=result.replayed,
            member_version=result.version,
        )

    @rpc
    def LeaveHousehold(
        self, request: ledger_pb2.LeaveHouseholdRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.LeaveHouseholdResponse:
        c = Checks()
        self._common(c, request)
        c.done()
        result = self._run(request, cmd.LeaveHousehold(member_id=request.member_id), business_time=False)
        left: ev.LeftHousehold | None = cv.first(result.events, ev.LeftHousehold)
        closed = cv.first(result.events, ev.HouseholdClosed) is not None
        return ledger_pb2.LeaveHouseholdResponse(
            member_id=request.member_id,
            owner_member_id=left.owner_member_id if left is not None else request.member_id,
            closed=closed,
            replayed=result.replayed,
            member_version=result.version,
        )

    @rpc
    def TransferPoints(
        self, request: ledger_pb2.TransferPointsRequest, context: grpc.ServicerContext
    ) -> ledger_pb2.TransferPointsResponse:
        c = Checks()
        self._common(c, request)
        c.caller_id("to_member_id", request.to_member_id)
        c.caller_id("transfer_id", request.transfer_id)
        if request.member_id and request.member_id == request.to_member_id:
            c.fail("to_member_id", "must differ from member_id")
        c.between("points", request.points, 1, MAX_TRANSFER_POINTS)
        c.done()
        result = self._run(
            request,
            cmd.TransferPoints(
                member_id=request.member_id,
                to_member_id=request.to_member_id,
                transfer_id=request.transfer_id,
                points=request.points,
            ),
            with_state=True,
        )
        view = self.app.after(result)
        response = ledger_pb2.TransferPointsResponse(
            member_id=request.member_id,
            to_member_id=request.to_member_id,
            transfer_id=request.transfer_id,
            balance_after=cv.snapshot(result.balance),
            replayed=result.replayed,
            member_version=result.version,
        )
        out: ev.PointsTransferredOut | None = cv.first(result.events, ev.PointsTransferredOut)
        if out is not None:
            response.points = out.points
            response.given_in_month = out.given_in_month
            response.debited.extend(cv.portions(out.debits, view.state.lots))
            for r in result.extra.get("received", ()):
                received = response.received.add(
                    lot_id=r["lot_id"],
                    source_lot_id=r["source_lot_id"],
                    points=r["points"],
                    arrears_repaid=r["arrears_repaid"],
                )
                cv.stamp(received.expires_at, datetime.fromisoformat(r["expires_at"]))
        return response
