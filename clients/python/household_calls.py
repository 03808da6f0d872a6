"""The client's calls about family accounts: households, joining, leaving, transfers between members."""

from __future__ import annotations

from clients.python.connection import LedgerConnection
from loyalty.v1 import common_pb2, ledger_pb2, query_pb2


class HouseholdCalls(LedgerConnection):
    """Create, join and leave households, transfer points inside one, read a household."""

    def create_household(
        self,
        owner_member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.CreateHouseholdResponse:
        """Open a household owned by ``owner_member_id`` (its id is the owner's member id)."""
        req = ledger_pb2.CreateHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=owner_member_id,
        )
        return self._call(lambda t: self.ledger.CreateHousehold(req, timeout=t))

    def join_household(
        self,
        member_id: str,
        owner_member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.JoinHouseholdResponse:
        """Put ``member_id`` into the household of ``owner_member_id`` (the caller vouches for both members)."""
        req = ledger_pb2.JoinHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            owner_member_id=owner_member_id,
        )
        return self._call(lambda t: self.ledger.JoinHousehold(req, timeout=t))

    def leave_household(
        self,
        member_id: str,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.LeaveHouseholdResponse:
        """Take ``member_id`` out of its household (it keeps its points); the owner's leave closes an empty one."""
        req = ledger_pb2.LeaveHouseholdRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
        )
        return self._call(lambda t: self.ledger.LeaveHousehold(req, timeout=t))

    def transfer_points(
        self,
        member_id: str,
        to_member_id: str,
        transfer_id: str,
        points: int,
        *,
        channel: common_pb2.Channel.ValueType = common_pb2.CHANNEL_MINI_PROGRAM,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.TransferPointsResponse:
        """Give ``points`` to another member of the household; they keep their expiry. A retry is answered once."""
        req = ledger_pb2.TransferPointsRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(channel, None),
            member_id=member_id,
            to_member_id=to_member_id,
            transfer_id=transfer_id,
            points=points,
        )
        return self._call(lambda t: self.ledger.TransferPoints(req, timeout=t))

    def get_household(self, member_id: str, *, min_version: int = 0) -> query_pb2.GetHouseholdResponse:
        """The household ``member_id`` is in: owner, members, seats, and what it may still give this month
        (``min_version``: of ``member_id``)."""
        req = query_pb2.GetHouseholdRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return self._call(lambda t: self.query.GetHousehold(req, timeout=t))
