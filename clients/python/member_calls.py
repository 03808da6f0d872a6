"""The client's calls about members: enrolment, lookup, balance, erasure, data export, import from a previous system."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from clients.python.connection import LedgerConnection, timestamp_of
from loyalty.v1 import common_pb2, import_pb2, ledger_pb2, member_pb2, query_pb2


class MemberCalls(LedgerConnection):
    """Enrol, look up, read the balance of, erase, export and import members."""

    def enroll(
        self, member_id: str = "", *, card_number: str | None = None, idempotency_key: str | None = None
    ) -> ledger_pb2.EnrollMemberResponse:
        identities = (
            [common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=card_number)]
            if card_number
            else []
        )
        req = ledger_pb2.EnrollMemberRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            member_id=member_id,
            identities=identities,
        )
        return self._call(lambda t: self.ledger.EnrollMember(req, timeout=t))

    def lookup(
        self, value: str, kind: common_pb2.IdentityKind.ValueType = common_pb2.IDENTITY_KIND_CARD_NUMBER
    ) -> query_pb2.LookupMemberResponse:
        req = query_pb2.LookupMemberRequest(
            program_id=self.program_id, identity=common_pb2.ChannelIdentity(kind=kind, value=value)
        )
        return self._call(lambda t: self.query.LookupMember(req, timeout=t))

    def get_balance(
        self,
        member_id: str,
        *,
        min_version: int = 0,
        as_of: datetime | None = None,
        as_known_at: datetime | None = None,
    ) -> member_pb2.Balance:
        """The member's balance now; ``min_version``: at least as new as a write that returned that
        ``member_version``; ``as_of`` / ``as_known_at``: as it was at a business time, as recorded by a time."""
        req = query_pb2.GetBalanceRequest(
            program_id=self.program_id, member_id=member_id, min_version=min_version
        )
        if as_of is not None:
            req.as_of.CopyFrom(timestamp_of(as_of))
        if as_known_at is not None:
            req.as_known_at.CopyFrom(timestamp_of(as_known_at))
        return self._call(lambda t: self.query.GetBalance(req, timeout=t)).balance

    def erase_member(
        self,
        member_id: str,
        reason: str,
        request_reference: str,
        operator_id: str,
        *,
        idempotency_key: str | None = None,
    ) -> ledger_pb2.EraseMemberResponse:
        """Destroy the member's personal data for good (an operator key). ``reason`` must hold no personal data;
        ``request_reference``: the data-subject request it answers. The points and history stay."""
        req = ledger_pb2.EraseMemberRequest(
            program_id=self.program_id,
            idempotency_key=idempotency_key or self.new_key(),
            context=self._context(common_pb2.CHANNEL_OPERATOR_CONSOLE, None, operator_id=operator_id),
            member_id=member_id,
            reason=reason,
            request_reference=request_reference,
        )
        return self._call(lambda t: self.ledger.EraseMember(req, timeout=t))

    def export_member_data(self, member_id: str) -> dict[str, Any]:
        """The member's personal data, identities and history as one JSON document (a subject-access request)."""
        req = query_pb2.ExportMemberDataRequest(program_id=self.program_id, member_id=member_id)
        document: str = self._call(lambda t: self.query.ExportMemberData(req, timeout=t)).document
        parsed: dict[str, Any] = json.loads(document)
        return parsed

    # -- moving in -----------------------------------------------------------------------------------------

    def import_members(
        self,
        rows: Iterable[import_pb2.ImportRow],
        source: str,
        *,
        dry_run: bool = False,
        rows_per_message: int = 200,
        timeout: float | None = None,
    ) -> import_pb2.ImportMembersResponse:
        """Stream members from the previous system into the program (``ImportService.ImportMembers``, an
        operator or admin key); at most 100,000 rows a call. Each row's idempotency key is the program, ``source``
        and its member id, so a retry (the whole stream again, on UNAVAILABLE) imports nothing twice.
        ``timeout``: the call's deadline (default: the client's ``timeout``)."""
        batch = list(rows)

        def messages() -> Iterable[import_pb2.ImportMembersRequest]:
            for start in range(0, max(len(batch), 1), rows_per_message):
                yield import_pb2.ImportMembersRequest(
                    program_id=self.program_id, source=source, dry_run=dry_run,
                    rows=batch[start : start + rows_per_message],
                )  # fmt: skip

        saved = self.timeout
        self.timeout = timeout if timeout is not None else saved
        try:
            return self._call(lambda t: self.imports.ImportMembers(iter(messages()), timeout=t))
        finally:
            self.timeout = saved
