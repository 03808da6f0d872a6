"""The client's audit calls: the program's points liability and a member's replayed events."""

from __future__ import annotations

from datetime import datetime

from clients.python.connection import LedgerConnection, timestamp_of
from loyalty.v1 import audit_pb2


class AuditCalls(LedgerConnection):
    """Read the points liability and replay a member's events."""

    def get_liability(
        self, as_of: datetime | None = None, *, as_known_at: datetime | None = None
    ) -> audit_pb2.GetLiabilityResponse:
        """The program's points liability in points and fen as of a business time (unset: now)."""
        req = audit_pb2.GetLiabilityRequest(program_id=self.program_id)
        if as_of is not None:
            req.as_of.CopyFrom(timestamp_of(as_of))
        if as_known_at is not None:
            req.as_known_at.CopyFrom(timestamp_of(as_known_at))
        return self._call(lambda t: self.audit.GetLiability(req, timeout=t))

    def replay_member(
        self, member_id: str, after_version: int = 0, page_size: int = 0
    ) -> list[audit_pb2.ReplayedEvent]:
        """Every event of the member after ``after_version``, oldest first (the streamed pages, concatenated)."""
        req = audit_pb2.ReplayMemberRequest(
            program_id=self.program_id, member_id=member_id, after_version=after_version, page_size=page_size
        )
        return self._call(
            lambda t: [event for page in self.audit.ReplayMember(req, timeout=t) for event in page.events]
        )
