"""Who may call: every loyalty.v1 method against every role, program and store scopes, the principal on events.

Keys are made the way a user makes them (``ledger keys create``); calls go to the real server over gRPC.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from clients.python.loyalty_client import keyed_channel
from ledger.testing.server import create_key, start_server, stop_server
from loyalty.v1 import (
    audit_pb2,
    common_pb2,
    keys_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    program_pb2,
    query_pb2,
    query_pb2_grpc,
)
from tests.e2e.conftest import ROOT, Program, Server

pytestmark = pytest.mark.e2e

MODULES = (program_pb2, ledger_pb2, query_pb2, audit_pb2, keys_pb2)
READS = {"LookupMember", "QuotePurchase", "GetBalance", "ListLots", "GetTierState", "ListEntitlements", "ListHistory",
         "GetPolicy", "GetClock", "ListRewards", "ListExchanges", "GetHousehold"}
TILL = READS | {"EnrollMember", "RecordPurchase", "AwardPoints", "HoldPoints", "CommitHold", "ReleaseHold",
                "RefundPurchase", "ConsumeEntitlement", "PurchaseMembership", "ExchangePoints", "CancelExchange",
                "CreateHousehold", "JoinHousehold", "LeaveHousehold", "TransferPoints"}
ALLOWED: dict[str, set[str]] = {
    "pos": TILL,
    "checkout": TILL,
    "operator": TILL | {"AdjustPoints", "OverrideTier", "MergeMembers", "CancelMembership", "GetLiability",
                        "EraseMember", "ExportMemberData", "AdjustStock"},
    "auditor": READS | {"ReplayMember", "VerifyMember", "VerifyProgram", "GetLiability"},
    "admin": TILL | {"AdjustPoints", "OverrideTier", "MergeMembers", "CancelMembership", "EraseMember",
                     "ExportMemberData", "AdjustStock", "ReplayMember",
                     "VerifyMember", "VerifyProgram", "GetLiability", "CreateProgram", "PublishPolicy", "AdvanceClock",
                     "CreateKey", "ListKeys", "RevokeKey"},
}
"""Who may call what, written out from the security model (docs/security.md), not read from the code."""
ROLES = tuple(ALLOWED)


def methods() -> Iterator[tuple[str, Any, bool]]:
    """(full method path, request class, server-streaming) of every loyalty.v1 method."""
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                request = getattr(module, method.input_type.name, None)
                if request is None:
                    request = next(getattr(m, method.input_type.name) for m in (*MODULES, common_pb2)
                                   if hasattr(m, method.input_type.name))  # fmt: skip
                yield f"/{service.full_name}/{method.name}", request, method.server_streaming


def call(channel: grpc.Channel, path: str, request: Any, streaming: bool) -> grpc.StatusCode:
    """The status a call ends with (OK when it answered)."""
    try:
        if streaming:
            list(channel.unary_stream(path, request_serializer=type(request).SerializeToString, response_deserializer=None)(
                request, timeout=10
            ))
        else:
            channel.unary_unary(path, request_serializer=type(request).SerializeToString, response_deserializer=None)(
                request, timeout=10
            )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def key_for(server: Server, program_id: str, role: str, *extra: str) -> str:
    return create_key(server.store_url, program_id, role, *extra, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_table_covers_every_method() -> None:
    assert {path.rsplit("/", 1)[-1] for path, _, _ in methods()} == ALLOWED["admin"]


def test_every_method_needs_a_key_and_health_does_not(server: Server) -> None:
    with grpc.insecure_channel(server.target) as plain, keyed_channel(server.target, "lk_0123456789abcdef_nope") as bad:
        for path, request_type, streaming in methods():
            request = request_type()
            assert call(plain, path, request, streaming) == grpc.StatusCode.UNAUTHENTICATED, path
            assert call(bad, path, request, streaming) == grpc.StatusCode.UNAUTHENTICATED, path
        reply = health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_call_exactly_its_methods(server: Server, program: Program, role: str) -> None:
    key = key_for(server, "*" if role == "admin" else program.program_id, role)
    with keyed_channel(server.target, key) as channel:
        for path, request_type, streaming in methods():
            request = request_type()
            if "program_id" in request_type.DESCRIPTOR.fields_by_name:
                request.program_id = program.program_id
            name = path.rsplit("/", 1)[-1]
            code = call(channel, path, request, streaming)
            if name in ALLOWED[role]:
                assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), (role, name)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (role, name, code)


def test_permission_denied_names_the_missing_permission(server: Server, program: Program) -> None:
    key = key_for(server, program.program_id, "auditor")
    with keyed_channel(server.target, key) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel).AdjustPoints
        with pytest.raises(grpc.RpcError) as refused:
            stub(ledger_pb2.AdjustPointsRequest(program_id=program.program_id), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(refused.value)
    assert info.reason == "PERMISSION_DENIED"
    assert info.metadata["permission"] == "member.manage" and info.metadata["role"] == "auditor"


def test_a_key_of_one_program_sees_nothing_of_another(server: Server, program: Program) -> None:
    key = key_for(server, program.program_id, "operator")
    other = "no_such_program"
    with keyed_channel(server.target, key) as channel:
        stub = query_pb2_grpc.MemberQueryServiceStub(channel).GetBalance
        answers = {}
        for program_id in ("little_sprout", other):  # one exists, one does not: the same answer
            with pytest.raises(grpc.RpcError) as refused:
                stub(query_pb2.GetBalanceRequest(program_id=program_id, member_id="m1"), timeout=10)
            answers[program_id] = (refused.value.code(), error_info(refused.value).reason)
    assert answers["little_sprout"] == answers[other] == (grpc.StatusCode.NOT_FOUND, "PROGRAM_NOT_FOUND")


def _enrol_and_buy(channel: grpc.Channel, program: Program, member_id: str, store_id: str) -> Any:
    enrol = ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember
    enrol(ledger_pb2.EnrollMemberRequest(program_id=program.program_id, idempotency_key=program.key("e"),
                                         member_id=member_id), timeout=10)  # fmt: skip
    buy = ledger_pb2_grpc.LedgerServiceStub(channel).RecordPurchase
    return buy(ledger_pb2.RecordPurchaseRequest(
        program_id=program.program_id, idempotency_key=program.key("b"), member_id=member_id, order_id="O1",
        context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id=store_id, operator_id="cashier-7"),
        lines=[ledger_pb2.OrderLine(line_id="1", sku="SKU", category="toys", quantity=1, paid_fen=10_000)],
    ), timeout=10)  # fmt: skip


def test_a_store_key_acts_for_its_store_only_and_the_principal_is_on_the_events(server: Server, program: Program) -> None:
    key = key_for(server, program.program_id, "pos", "--store", "S-1", "--name", "till 1")
    key_id = key.split("_")[1]
    with keyed_channel(server.target, key) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            _enrol_and_buy(channel, program, "m-store", "S-2")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(refused.value).reason == "STORE_NOT_ALLOWED"
        _enrol_and_buy(channel, program, "m-store-ok", "")  # no store named: acts for its own
    replay = list(server.audit.ReplayMember(audit_pb2.ReplayMemberRequest(program_id=program.program_id, member_id="m-store-ok")))
    events = [e for page in replay for e in page.events]
    bought = next(e for e in events if e.event_type == "PurchaseRecorded")
    assert (bought.actor.key_id, bought.actor.role, bought.actor.store_id) == (key_id, "pos", "S-1")
    assert bought.actor.operator_id == "cashier-7"  # the label the client sent, kept as a label


def test_a_revoked_key_is_refused(server: Server, program: Program) -> None:
    key = key_for(server, program.program_id, "auditor")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with keyed_channel(server.target, key) as channel:
        path = "/loyalty.v1.ProgramService/GetClock"
        request = program_pb2.GetClockRequest(program_id=program.program_id)
        assert call(channel, path, request, False) == grpc.StatusCode.OK
        subprocess.run([sys.executable, "-m", "ledger.entrypoints.cli", "--store", server.store_url, "keys", "revoke",
                        key.split("_")[1]], cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
        deadline = time.monotonic() + 10  # the server re-reads the keys at least every 2 s
        while call(channel, path, request, False) == grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "a revoked key was still accepted after 10 s"
            time.sleep(0.1)
        assert call(channel, path, request, False) == grpc.StatusCode.UNAUTHENTICATED


def test_first_start_writes_one_admin_key_file_and_never_logs_the_secret(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--no-reference-program"])
    try:
        key_file = tmp_path / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        secret = key_file.read_text().strip()
        assert running.api_key == secret and secret.startswith("lk_")
    finally:
        stop_server(running.process)
    log = running.log_path.read_text()
    assert "admin_key_created" in log and str(key_file) in log
    assert secret not in log and secret.split("_", 2)[2] not in log
    listed = subprocess.run([sys.executable, "-m", "ledger.entrypoints.cli", "--store", running.store_url, "keys", "list"],
                            cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    [admin] = [json.loads(line) for line in listed.splitlines()]
    assert (admin["program_id"], admin["role"]) == ("*", "admin")
    assert secret.split("_", 2)[2] not in listed and "hash" not in listed


def test_insecure_no_auth_says_so_loudly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = start_server(tmp_path, env=env, cwd=ROOT, extra_args=["--no-reference-program", "--insecure-no-auth"])
    try:
        assert running.api_key is None
        with grpc.insecure_channel(running.target) as channel:
            request = program_pb2.GetClockRequest(program_id="nope")
            assert call(channel, "/loyalty.v1.ProgramService/GetClock", request, False) == grpc.StatusCode.NOT_FOUND
    finally:
        stop_server(running.process)
    assert "authentication_off" in running.log_path.read_text()
    assert not (tmp_path / "admin.key").exists()
