"""The client's reads of a member's lots, tier, entitlements and history (the balance is in ``member_calls``).

Each takes ``min_version`` as ``get_balance`` does: at least as new as a write that returned that
``member_version`` (read-your-writes); 0 = no requirement.
"""

from __future__ import annotations

from clients.python.connection import LedgerConnection
from loyalty.v1 import member_pb2, query_pb2


class QueryCalls(LedgerConnection):
    """MemberQueryService's paged reads of one member."""

    def list_lots(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListLotsResponse:
        """One page of the member's lots, in the order debits consume them."""
        req = query_pb2.ListLotsRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListLots(req, timeout=t))

    def get_tier_state(self, member_id: str, *, min_version: int = 0) -> member_pb2.TierState:
        """The member's tier, growth in the window, next tier, review, overrides and paid memberships."""
        req = query_pb2.GetTierStateRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        return self._call(lambda t: self.query.GetTierState(req, timeout=t)).tier_state

    def list_entitlements(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListEntitlementsResponse:
        """One page of the member's entitlements, newest grant first."""
        req = query_pb2.ListEntitlementsRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListEntitlements(req, timeout=t))

    def list_history(
        self, member_id: str, *, page_size: int = 0, page_token: str = "", min_version: int = 0
    ) -> query_pb2.ListHistoryResponse:
        """One page of the member's history, newest first (``min_version`` counts on the first page only)."""
        req = query_pb2.ListHistoryRequest(
            program_id=self.program_id,
            member_id=member_id,
            page_size=page_size,
            page_token=page_token,
            min_version=min_version,
        )
        return self._call(lambda t: self.query.ListHistory(req, timeout=t))
