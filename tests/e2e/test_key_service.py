"""KeyService over gRPC: keys created by an admin work at once, revoked ones are refused within seconds, scopes
hold (a program admin manages its own program's keys only, ``*`` keys need a ``*`` admin), and the secret is
never in the server's log, the event log or an error message.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from clients.python.loyalty_client import keyed_channel
from ledger.bootstrap import Settings, open_backend
from loyalty.v1 import keys_pb2, keys_pb2_grpc, program_pb2, program_pb2_grpc
from tests.e2e.conftest import Program, Server
from tests.e2e.test_auth import error_info, key_for

pytestmark = pytest.mark.e2e


def keys(channel: grpc.Channel) -> keys_pb2_grpc.KeyServiceStub:
    return keys_pb2_grpc.KeyServiceStub(channel)


def clock_code(key: str, server: Server, program_id: str) -> grpc.StatusCode:
    with keyed_channel(server.target, key) as channel:
        try:
            program_pb2_grpc.ProgramServiceStub(channel).GetClock(
                program_pb2.GetClockRequest(program_id=program_id), timeout=10
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def refused(fn: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        fn(request, timeout=10)
    return caught.value


def all_event_bytes(store_url: str) -> bytes:
    """Every event of the log (payload and actor), as the store keeps them."""
    backend = open_backend(Settings.from_env(store_url))
    out = bytearray()
    after = 0
    try:
        while batch := backend.store.read_all(after_position=after, limit=1000):
            for event in batch:
                out += event.payload + repr(event.actor).encode()
            after = batch[-1].position
    finally:
        close = getattr(backend.store, "close", None)
        if callable(close):
            close()
    return bytes(out)


def test_a_key_created_over_grpc_works_and_a_revoked_one_is_refused_within_seconds(
    server: Server, program: Program
) -> None:
    created = keys(server.channel).CreateKey(keys_pb2.CreateKeyRequest(
        program_id=program.program_id, role=keys_pb2.KEY_ROLE_AUDITOR, name="auditor over grpc",
    ), timeout=10)  # fmt: skip
    secret = created.secret
    assert secret.startswith(f"lk_{created.key.key_id}_")
    assert (created.key.program_id, created.key.role, created.key.name) == (
        program.program_id, keys_pb2.KEY_ROLE_AUDITOR, "auditor over grpc"
    )
    assert not created.key.HasField("revoked_at")
    assert clock_code(secret, server, program.program_id) == grpc.StatusCode.OK  # usable at once

    listed = keys(server.channel).ListKeys(keys_pb2.ListKeysRequest(program_id=program.program_id), timeout=10)
    assert created.key.key_id in [k.key_id for k in listed.keys]
    assert secret.split("_", 2)[2].encode() not in listed.SerializeToString()

    revoked = keys(server.channel).RevokeKey(keys_pb2.RevokeKeyRequest(key_id=created.key.key_id), timeout=10)
    assert revoked.key.HasField("revoked_at")
    deadline = time.monotonic() + 10  # the server re-reads the keys at least every 2 s
    while (code := clock_code(secret, server, program.program_id)) == grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "a key revoked over gRPC was still accepted after 10 s"
        time.sleep(0.1)
    assert code == grpc.StatusCode.UNAUTHENTICATED

    # The secret is in the CreateKey answer only: not in the server's log, not in any event.
    tail = secret.split("_", 2)[2]
    assert tail not in server.log_path.read_text()
    assert tail.encode() not in all_event_bytes(server.store_url)


def test_a_program_admin_manages_its_own_programs_keys_only(server: Server, program: Program) -> None:
    admin = key_for(server, program.program_id, "admin")
    with keyed_channel(server.target, admin) as channel:
        stub = keys(channel)
        mine = stub.CreateKey(keys_pb2.CreateKeyRequest(
            program_id=program.program_id, role=keys_pb2.KEY_ROLE_POS, store_id="S-9",
        ), timeout=10)  # fmt: skip
        assert mine.key.store_id == "S-9"
        everything = refused(stub.CreateKey, keys_pb2.CreateKeyRequest(program_id="*", role=keys_pb2.KEY_ROLE_ADMIN))
        assert everything.code() == grpc.StatusCode.PERMISSION_DENIED
        other = refused(stub.CreateKey, keys_pb2.CreateKeyRequest(program_id="little_sprout", role=keys_pb2.KEY_ROLE_POS))
        assert (other.code(), error_info(other).reason) == (grpc.StatusCode.NOT_FOUND, "PROGRAM_NOT_FOUND")
        assert refused(stub.ListKeys, keys_pb2.ListKeysRequest()).code() == grpc.StatusCode.PERMISSION_DENIED
        listed = stub.ListKeys(keys_pb2.ListKeysRequest(program_id=program.program_id), timeout=10).keys
        assert {k.program_id for k in listed} == {program.program_id}
        # A key of another program, and a deployment key: the same answer as a key that does not exist.
        foreign = key_for(server, "little_sprout", "pos").split("_")[1]
        deployment = server.api_key.split("_")[1] if server.api_key else ""
        for key_id in (foreign, deployment, "0123456789abcdef"):
            found = refused(stub.RevokeKey, keys_pb2.RevokeKeyRequest(key_id=key_id))
            assert (found.code(), error_info(found).reason) == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND"), key_id
        assert stub.RevokeKey(keys_pb2.RevokeKeyRequest(key_id=mine.key.key_id), timeout=10).key.HasField("revoked_at")
    operator = key_for(server, program.program_id, "operator")
    with keyed_channel(server.target, operator) as channel:
        denied = refused(keys(channel).ListKeys, keys_pb2.ListKeysRequest(program_id=program.program_id))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(denied).metadata["permission"] == "keys.manage"


def test_bad_key_requests_name_the_field(server: Server, program: Program) -> None:
    stub = keys(server.channel)
    past = Timestamp(seconds=int(time.time()) - 3600)
    cases = [
        (keys_pb2.CreateKeyRequest(program_id=program.program_id), "role"),
        (keys_pb2.CreateKeyRequest(program_id="Bad Id", role=keys_pb2.KEY_ROLE_POS), "program_id"),
        (keys_pb2.CreateKeyRequest(program_id="*", role=keys_pb2.KEY_ROLE_POS), "program_id"),
        (keys_pb2.CreateKeyRequest(program_id=program.program_id, role=keys_pb2.KEY_ROLE_AUDITOR, store_id="S-1"),
         "store_id"),
        (keys_pb2.CreateKeyRequest(program_id=program.program_id, role=keys_pb2.KEY_ROLE_POS, expires_at=past),
         "expires_at"),
    ]  # fmt: skip
    for request, field in cases:
        exc = refused(stub.CreateKey, request)
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, exc.details())
        assert field in (exc.details() or ""), (field, exc.details())
    exc = refused(stub.RevokeKey, keys_pb2.RevokeKeyRequest(key_id="not-a-key"))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT and "key_id" in (exc.details() or "")


def test_the_key_service_is_in_health_and_reflection(server: Server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.target) as plain:
        reply = health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(service="loyalty.v1.KeyService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    answers = reflection_pb2_grpc.ServerReflectionStub(server.channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert "loyalty.v1.KeyService" in names
