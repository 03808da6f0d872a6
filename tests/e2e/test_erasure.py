"""Erasure and the subject-access export over gRPC, on a real server with authentication on (an operator key).

A member enrolled with a phone number and a profile earns and redeems, is exported, then erased: the books
(balance, replay, verification, liability) are what they were, the phone number finds no one, the export shows
the profile as erased, and a second erasure is refused. ``ledger export-member`` prints the same document.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.python.loyalty_client import keyed_channel
from ledger.testing.server import create_key
from loyalty.v1 import (
    audit_pb2,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)
from tests.e2e.conftest import ROOT, START, Program, Server

pytestmark = pytest.mark.e2e

PHONE = "+8613912345678"
BABY_BORN = "2024-07-19"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def enrol_earn_and_redeem(
    ledger: ledger_pb2_grpc.LedgerServiceStub, program: Program, member_id: str
) -> None:
    """Enrol ``member_id`` with ``PHONE`` and a profile, buy for 300.00 CNY, let the points activate, redeem 20."""
    p = program.program_id
    ledger.EnrollMember(
        ledger_pb2.EnrollMemberRequest(
            program_id=p,
            idempotency_key=program.key("enrol"),
            member_id=member_id,
            identities=[
                common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_PHONE_HASH, value=PHONE),
                common_pb2.ChannelIdentity(
                    kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=f"CARD-{member_id}"
                ),
            ],
            profile=ledger_pb2.PersonalProfile(
                birth_month=3, baby_birth_date=BABY_BORN, phone=PHONE, consent=True
            ),
        )
    )
    ledger.RecordPurchase(
        ledger_pb2.RecordPurchaseRequest(
            program_id=p,
            idempotency_key=program.key("buy"),
            context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1"),
            member_id=member_id,
            order_id="O-1",
            lines=[
                ledger_pb2.OrderLine(line_id="1", sku="TOY-1", category="toys", quantity=1, paid_fen=300_00)
            ],
            order_total_fen=300_00,
        )
    )
    program.advance(START + timedelta(days=8))
    ledger.HoldPoints(
        ledger_pb2.HoldPointsRequest(
            program_id=p,
            idempotency_key=program.key("hold"),
            member_id=member_id,
            hold_id="H-1",
            points=20,
            order_id="O-2",
            order_total_fen=1000_00,
        )
    )
    ledger.CommitHold(
        ledger_pb2.CommitHoldRequest(
            program_id=p, idempotency_key=program.key("commit"), member_id=member_id, hold_id="H-1"
        )
    )


def erase_request(program: Program, member_id: str, key: str) -> ledger_pb2.EraseMemberRequest:
    return ledger_pb2.EraseMemberRequest(
        program_id=program.program_id,
        idempotency_key=key,
        context=common_pb2.RequestContext(operator_id="dpo-1"),
        member_id=member_id,
        reason="data-subject request, identity checked at the service desk",
        request_reference="DSR-2026-0042",
    )


def replayed_events(server: Server, program: Program, member_id: str) -> list[Any]:
    request = audit_pb2.ReplayMemberRequest(program_id=program.program_id, member_id=member_id)
    return [e for page in server.audit.ReplayMember(request) for e in page.events]


def export(query: query_pb2_grpc.MemberQueryServiceStub, program: Program, member_id: str) -> dict[str, Any]:
    reply = query.ExportMemberData(
        query_pb2.ExportMemberDataRequest(program_id=program.program_id, member_id=member_id)
    )
    document: dict[str, Any] = json.loads(reply.document)
    return document


def reason_of(exc: grpc.RpcError) -> str:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return str(info.reason)


def operator_channel(server: Server, program: Program) -> grpc.Channel:
    key = create_key(server.store_url, program.program_id, "operator", cwd=ROOT, env=ENV)
    return keyed_channel(server.target, key)


def test_an_erased_member_keeps_its_books_and_loses_its_profile_and_identities(
    server: Server, program: Program
) -> None:
    p, member_id = program.program_id, "m-erase"
    with operator_channel(server, program) as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        query = query_pb2_grpc.MemberQueryServiceStub(channel)
        enrol_earn_and_redeem(ledger, program, member_id)
        lookup = query_pb2.LookupMemberRequest(
            program_id=p,
            identity=common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_PHONE_HASH, value=PHONE),
        )
        assert query.LookupMember(lookup).member_id == member_id

        before = export(query, program, member_id)
        assert before["profile_status"] == "stored"
        assert before["profile"] == {
            "birth_month": 3,
            "baby_birth_date": BABY_BORN,
            "phone": PHONE,
            "consent": True,
        }
        assert {i["kind"] for i in before["identities"]} == {"phone_hash", "card_number"}
        assert PHONE not in json.dumps(before["identities"])  # digests only
        assert [e["type"] for e in before["events"]][:2] == ["MemberEnrolled", "PurchaseRecorded"]

        balance = query.GetBalance(query_pb2.GetBalanceRequest(program_id=p, member_id=member_id)).balance
        events = replayed_events(server, program, member_id)
        liability = server.audit.GetLiability(audit_pb2.GetLiabilityRequest(program_id=p))

        erased = ledger.EraseMember(erase_request(program, member_id, "erase-1"))
        assert (erased.identities_removed, erased.replayed) == (2, False)
        again = ledger.EraseMember(erase_request(program, member_id, "erase-1"))
        assert again.replayed and again.member_version == erased.member_version
        with pytest.raises(grpc.RpcError) as refused:
            ledger.EraseMember(erase_request(program, member_id, "erase-2"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(refused.value) == "MEMBER_ERASED"

        after_balance = query.GetBalance(
            query_pb2.GetBalanceRequest(program_id=p, member_id=member_id, min_version=erased.member_version)
        ).balance
        assert (after_balance.active, after_balance.pending, after_balance.available) == (
            balance.active,
            balance.pending,
            balance.available,
        )
        assert after_balance.lifetime_redeemed == balance.lifetime_redeemed == 20
        after_events = replayed_events(server, program, member_id)
        assert after_events[: len(events)] == events
        assert [e.event_type for e in after_events[len(events) :]] == ["MemberErased"]
        verified = server.audit.VerifyMember(audit_pb2.VerifyMemberRequest(program_id=p, member_id=member_id))
        assert verified.ok, verified.first_problem
        assert server.audit.GetLiability(audit_pb2.GetLiabilityRequest(program_id=p)) == liability

        with pytest.raises(grpc.RpcError) as missing:
            query.LookupMember(lookup)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        after = export(query, program, member_id)
        assert (after["profile_status"], after["profile"], after["identities"]) == ("erased", None, [])
        assert after["erasure"]["request_reference"] == "DSR-2026-0042"
        assert after["balance"]["available"] == before["balance"]["available"]
        assert [e["type"] for e in after["events"]] == [
            *(e["type"] for e in before["events"]),
            "MemberErased",
        ]

        # a later purchase still earns, with no profile (no birthday month)
        ledger.RecordPurchase(
            ledger_pb2.RecordPurchaseRequest(
                program_id=p,
                idempotency_key=program.key("buy"),
                member_id=member_id,
                order_id="O-3",
                lines=[
                    ledger_pb2.OrderLine(
                        line_id="1", sku="TOY-1", category="toys", quantity=1, paid_fen=100_00
                    )
                ],
                order_total_fen=100_00,
            )
        )
    cli = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "--store", server.store_url, "export-member",
         "--program", p, "--member", member_id],
        cwd=ROOT, env=ENV, check=True, capture_output=True, text=True,
    )  # fmt: skip
    printed = json.loads(cli.stdout)
    assert (printed["profile_status"], printed["profile"]) == ("erased", None)
    assert PHONE not in cli.stdout and BABY_BORN not in cli.stdout


def test_erasure_and_export_need_an_operator(server: Server, program: Program) -> None:
    key = create_key(server.store_url, program.program_id, "pos", cwd=ROOT, env=ENV)
    with keyed_channel(server.target, key) as channel:
        for call in (
            lambda: ledger_pb2_grpc.LedgerServiceStub(channel).EraseMember(
                erase_request(program, "m-x", "e-1")
            ),
            lambda: export(query_pb2_grpc.MemberQueryServiceStub(channel), program, "m-x"),
        ):
            with pytest.raises(grpc.RpcError) as denied:
                call()
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_erasure_needs_a_reason_and_the_request_reference(server: Server, program: Program) -> None:
    with operator_channel(server, program) as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        for field, value in (("reason", ""), ("request_reference", ""), ("reason", "x" * 1001)):
            request = erase_request(program, "m-x", program.key("erase"))
            setattr(request, field, value)
            with pytest.raises(grpc.RpcError) as bad:
                ledger.EraseMember(request)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            status = rpc_status.from_call(bad.value)  # type: ignore[arg-type]
            assert status is not None
            violations = error_details_pb2.BadRequest()
            assert any(d.Unpack(violations) for d in status.details)
            assert [v.field for v in violations.field_violations] == [field]
