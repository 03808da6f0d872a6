"""Family accounts over a real gRPC server: open, join, transfer with the expiry kept, refusals with their reason
codes and numbers, a retry answered once, leaving, the household query, verify, through the raw stubs and the
Python client."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient
from loyalty.v1 import audit_pb2, common_pb2, ledger_pb2, member_pb2, query_pb2
from tests.e2e.conftest import START, Program, dt, ts
from tests.e2e.test_api import enroll, failure
from tests.e2e.test_mall import credit

pytestmark = pytest.mark.e2e

TILL = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S1", terminal_id="T1")


def join(p: Program, member_id: str, owner: str) -> ledger_pb2.JoinHouseholdResponse:
    return p.server.ledger.JoinHousehold(
        ledger_pb2.JoinHouseholdRequest(
            program_id=p.program_id, idempotency_key=p.key("join"), context=TILL, member_id=member_id,
            owner_member_id=owner,
        )
    )  # fmt: skip


def transfer_request(
    p: Program, giver: str, to: str, transfer_id: str, points: int, key: str | None = None
) -> ledger_pb2.TransferPointsRequest:
    return ledger_pb2.TransferPointsRequest(
        program_id=p.program_id, idempotency_key=key or p.key("t"), context=TILL, member_id=giver,
        to_member_id=to, transfer_id=transfer_id, points=points,
    )  # fmt: skip


def test_a_transfer_between_household_members_keeps_the_expiry_and_a_retry_is_answered_once(
    program: Program,
) -> None:
    for m in ("m1", "m2", "m3"):
        enroll(program, m)
    ledger, query = program.server.ledger, program.server.query
    opened = ledger.CreateHousehold(
        ledger_pb2.CreateHouseholdRequest(
            program_id=program.program_id, idempotency_key="open-1", context=TILL, member_id="m1"
        )
    )
    assert opened.max_members == 5
    assert join(program, "m2", "m1").owner_member_id == "m1"
    credit(program, "m1", 3_000)
    request = transfer_request(program, "m1", "m2", "T1", 1_200, key="tk-1")
    first = ledger.TransferPoints(request)
    assert (first.points, first.given_in_month, first.replayed) == (1_200, 1_200, False)
    assert first.balance_after.available == 1_800
    (received,) = first.received
    (debited,) = first.debited
    assert received.source_lot_id == debited.lot_id and received.points == 1_200
    assert dt(received.expires_at) == dt(debited.expires_at)
    again = ledger.TransferPoints(request)
    assert again.replayed and [r.lot_id for r in again.received] == [received.lot_id]
    lots = query.ListLots(query_pb2.ListLotsRequest(program_id=program.program_id, member_id="m2")).lots
    assert [(lot.lot_id, lot.source, dt(lot.expires_at)) for lot in lots] == [
        (received.lot_id, member_pb2.LOT_SOURCE_TRANSFER, dt(received.expires_at))
    ]
    household = query.GetHousehold(
        query_pb2.GetHouseholdRequest(program_id=program.program_id, member_id="m2")
    )
    assert (household.owner_member_id, list(household.member_ids), household.max_members) == ("m1", ["m2"], 5)
    mine = query.GetHousehold(query_pb2.GetHouseholdRequest(program_id=program.program_id, member_id="m1"))
    assert mine.transfer_left_this_month == 8_800
    since = ts(START - timedelta(seconds=1))
    liability = program.server.audit.GetLiability(
        audit_pb2.GetLiabilityRequest(program_id=program.program_id, since=since)
    )
    moved = liability.movements
    assert moved.transferred_in.points == moved.transferred_out.points == 1_200
    assert liability.total.points == 3_000  # a transfer moves no point of the program's liability
    for m in ("m1", "m2"):
        report = program.server.audit.VerifyMember(
            audit_pb2.VerifyMemberRequest(program_id=program.program_id, member_id=m)
        )
        assert report.ok


def test_household_refusals_carry_their_reason_codes_and_numbers(program: Program) -> None:
    for m in ("m1", "m2", "m3"):
        enroll(program, m)
    ledger = program.server.ledger
    ledger.CreateHousehold(
        ledger_pb2.CreateHouseholdRequest(
            program_id=program.program_id, idempotency_key="open-1", context=TILL, member_id="m1"
        )
    )
    join(program, "m2", "m1")
    credit(program, "m1", 20_000)
    code, info, _ = failure(ledger.TransferPoints, transfer_request(program, "m1", "m3", "T1", 10))
    assert (code, info.reason if info else None) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_SAME_HOUSEHOLD",
    )
    ledger.TransferPoints(transfer_request(program, "m1", "m2", "T2", 9_500))
    code, info, _ = failure(ledger.TransferPoints, transfer_request(program, "m1", "m2", "T3", 501))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info is not None
    assert info.reason == "TRANSFER_LIMIT_REACHED" and info.metadata["left"] == "500"
    ledger.TransferPoints(transfer_request(program, "m2", "m1", "T2", 1))  # transfer ids are per giver
    code, info, _ = failure(ledger.TransferPoints, transfer_request(program, "m1", "m2", "T2", 1))
    assert (code, info.reason if info else None) == (grpc.StatusCode.ALREADY_EXISTS, "TRANSFER_EXISTS")
    code, _, bad = failure(ledger.TransferPoints, transfer_request(program, "m1", "m2", "T9", 0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert [v.field for v in bad.field_violations] == ["points"]
    code, _, bad = failure(ledger.TransferPoints, transfer_request(program, "m1", "m1", "T9", 5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert [v.field for v in bad.field_violations] == ["to_member_id"]
    code, info, _ = failure(
        ledger.LeaveHousehold,
        ledger_pb2.LeaveHouseholdRequest(
            program_id=program.program_id, idempotency_key="leave-owner", context=TILL, member_id="m1"
        ),
    )
    assert (code, info.reason if info else None) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "HOUSEHOLD_NOT_EMPTY",
    )


def test_the_client_opens_joins_transfers_and_leaves(program: Program) -> None:
    for m in ("m1", "m2"):
        enroll(program, m)
    credit(program, "m2", 900)
    with LoyaltyClient(program.server.target, program.program_id, api_key=program.server.api_key) as client:
        client.create_household("m1")
        client.join_household("m2", "m1")
        sent = client.transfer_points("m2", "m1", "T1", 400)
        assert sent.points == 400 and sent.balance_after.available == 500
        assert client.get_household("m1").member_ids == ["m2"]
        left = client.leave_household("m2")
        assert left.owner_member_id == "m1" and not left.closed
        assert client.leave_household("m1").closed
        with pytest.raises(LedgerRefusal) as caught:
            client.get_household("m2")
        assert caught.value.reason == "NOT_IN_HOUSEHOLD"
    balance = program.server.query.GetBalance(
        query_pb2.GetBalanceRequest(program_id=program.program_id, member_id="m2")
    )
    assert balance.balance.available == 500
