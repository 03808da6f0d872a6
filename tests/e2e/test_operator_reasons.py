"""Operator writes need a reason: each one without it is INVALID_ARGUMENT naming the field, and a merge's reason
is recorded on both members' merge events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from clients.python.loyalty_client import LedgerRefusal
from loyalty.v1 import audit_pb2, common_pb2, ledger_pb2
from tests.e2e.conftest import Program

pytestmark = pytest.mark.e2e

CONSOLE = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


def violations(call: Callable[..., Any], request: Any) -> dict[str, str]:
    with pytest.raises(grpc.RpcError) as refused:
        call(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return LedgerRefusal.from_error(refused.value).field_violations


def enrol(program: Program, member_id: str) -> None:
    program.server.ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(
        program_id=program.program_id, idempotency_key=program.key("e"), member_id=member_id,
    ), timeout=10)  # fmt: skip


def test_every_operator_write_refuses_a_missing_reason(program: Program) -> None:
    ledger = program.server.ledger
    base: dict[str, Any] = {"program_id": program.program_id, "context": CONSOLE, "member_id": "m-1"}
    cases: list[tuple[Callable[..., Any], Any, set[str]]] = [
        (ledger.MergeMembers, ledger_pb2.MergeMembersRequest(
            **base, idempotency_key=program.key(), source_member_id="m-2"), {"reason"}),
        (ledger.AdjustPoints, ledger_pb2.AdjustPointsRequest(
            **base, idempotency_key=program.key(), points=10), {"reason_code", "note"}),
        (ledger.OverrideTier, ledger_pb2.OverrideTierRequest(**base, idempotency_key=program.key(), tier="gold"),
         {"reason"}),
        (ledger.CancelMembership, ledger_pb2.CancelMembershipRequest(
            **base, idempotency_key=program.key(), membership_id="pm-1"), {"reason"}),
    ]  # fmt: skip
    for call, request, fields in cases:
        found = violations(call, request)
        assert fields <= set(found), (type(request).__name__, found)
        assert all("required" in found[f] for f in fields)


def test_a_merge_records_its_reason_on_both_members(program: Program) -> None:
    enrol(program, "m-keep")
    enrol(program, "m-dup")
    reason = "same phone and baby birth date, ticket T-42"
    program.server.ledger.MergeMembers(ledger_pb2.MergeMembersRequest(
        program_id=program.program_id, idempotency_key=program.key("merge"), context=CONSOLE, member_id="m-keep",
        source_member_id="m-dup", reason=reason,
    ), timeout=10)  # fmt: skip
    for member_id, event_type in (("m-keep", "MemberAbsorbed"), ("m-dup", "MemberMerged")):
        pages = program.server.audit.ReplayMember(
            audit_pb2.ReplayMemberRequest(program_id=program.program_id, member_id=member_id), timeout=10
        )
        [event] = [e for page in pages for e in page.events if e.event_type == event_type]
        assert json.loads(event.payload_json)["reason"] == reason, member_id
