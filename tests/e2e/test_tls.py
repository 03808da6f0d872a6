"""TLS on the real server with real certificates: TLS works, plaintext is refused, a rotated certificate is served
without a restart, mutual TLS refuses clients without a certificate, and a client certificate's CN binds pos
keys to its store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient, keyed_channel, tls_credentials
from ledger.testing.certs import TestCA
from ledger.testing.server import RunningServer, create_key, start_server, stop_server
from loyalty.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    program_pb2,
    program_pb2_grpc,
)
from tests.e2e.test_auth import error_info

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def get_clock(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        program_pb2_grpc.ProgramServiceStub(channel).GetClock(
            program_pb2.GetClockRequest(program_id="little_sprout"), timeout=5
        )
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def healthy(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path, TestCA]]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = TestCA("ledger test CA")
    cert, key = ca.issue("ledger.test", server=True).write(tmp, "server")
    running = start_server(tmp, env=ENV, cwd=ROOT, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)],
                           credentials=tls_credentials(ca.pem))  # fmt: skip
    try:
        yield running, tmp, ca
    finally:
        stop_server(running.process)


def test_tls_serves_and_plaintext_is_refused(tls_server: tuple[RunningServer, Path, TestCA]) -> None:
    running, _, ca = tls_server
    with keyed_channel(running.target, running.api_key, credentials=tls_credentials(ca.pem)) as channel:
        assert get_clock(channel) == grpc.StatusCode.OK
    with keyed_channel(running.target, running.api_key) as plain:
        assert get_clock(plain) == grpc.StatusCode.UNAVAILABLE
        assert healthy(plain) == grpc.StatusCode.UNAVAILABLE
    with keyed_channel(running.target, running.api_key, credentials=tls_credentials(TestCA("stranger").pem)) as other:
        assert get_clock(other) == grpc.StatusCode.UNAVAILABLE  # a server certificate from an unknown CA
    with LoyaltyClient(running.target, "little_sprout", api_key=running.api_key, tls=tls_credentials(ca.pem),
                       retries=0) as client:  # fmt: skip
        with pytest.raises(LedgerRefusal) as unknown:
            client.get_balance("nobody")
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND  # answered over TLS


def test_ledger_health_checks_over_tls(tls_server: tuple[RunningServer, Path, TestCA]) -> None:
    running, tmp, ca = tls_server
    (tmp / "ca.pem").write_bytes(ca.pem)
    health = [sys.executable, "-m", "ledger.entrypoints.cli", "health", "--target", running.target]
    ok = subprocess.run([*health, "--tls-ca", str(tmp / "ca.pem")], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING")
    plain = subprocess.run(health, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stdout


def test_a_rotated_certificate_is_served_without_a_restart(tls_server: tuple[RunningServer, Path, TestCA]) -> None:
    running, tmp, old_ca = tls_server
    new_ca = TestCA("ledger test CA, rotated")
    issued = new_ca.issue("ledger.test", server=True)
    for name, data in (("server.key", issued.key_pem), ("server.pem", issued.cert_pem)):
        (tmp / f"{name}.new").write_bytes(data)
        os.replace(tmp / f"{name}.new", tmp / name)
    deadline = time.monotonic() + 10
    while True:  # the server reads the files again before the next handshake; poll a few fresh connections
        with keyed_channel(running.target, running.api_key, credentials=tls_credentials(new_ca.pem)) as channel:
            if get_clock(channel) == grpc.StatusCode.OK:
                break
        assert time.monotonic() < deadline, "the rotated certificate was not served within 10 s"
        time.sleep(0.2)
    with keyed_channel(running.target, running.api_key, credentials=tls_credentials(old_ca.pem)) as stale:
        assert get_clock(stale) == grpc.StatusCode.UNAVAILABLE  # the old certificate is no longer presented
    assert running.process.poll() is None
    assert "tls_reloaded" in running.log_path.read_text()


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, TestCA, Path]]:
    tmp = tmp_path_factory.mktemp("mtls")
    ca = TestCA("ledger test CA")
    cert, key = ca.issue("ledger.test", server=True).write(tmp, "server")
    (tmp / "client-ca.pem").write_bytes(ca.pem)
    ops = ca.issue("ops-console", server=False)
    ops.write(tmp, "ops")
    running = start_server(
        tmp, env=ENV, cwd=ROOT,
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(tmp / "client-ca.pem"),
                    "--tls-store-from-cn"],
        credentials=tls_credentials(ca.pem, ops.cert_pem, ops.key_pem),
    )  # fmt: skip
    try:
        yield running, ca, tmp
    finally:
        stop_server(running.process)


def enrol(channel: grpc.Channel, member_id: str, store_id: str = "") -> grpc.RpcError | None:
    try:
        ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember(ledger_pb2.EnrollMemberRequest(
            program_id="little_sprout", idempotency_key=f"enrol-{member_id}", member_id=member_id,
            context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id=store_id),
        ), timeout=10)  # fmt: skip
    except grpc.RpcError as exc:
        return exc
    return None


def test_mutual_tls_needs_a_client_certificate_and_its_cn_names_the_store(
    mtls_server: tuple[RunningServer, TestCA, Path],
) -> None:
    running, ca, _ = mtls_server
    with keyed_channel(running.target, running.api_key, credentials=tls_credentials(ca.pem)) as no_cert:
        assert get_clock(no_cert) == grpc.StatusCode.UNAVAILABLE
        assert healthy(no_cert) == grpc.StatusCode.UNAVAILABLE
    stranger = TestCA("stranger").issue("S-1", server=False)
    with keyed_channel(running.target, running.api_key,
                       credentials=tls_credentials(ca.pem, stranger.cert_pem, stranger.key_pem)) as forged:  # fmt: skip
        assert get_clock(forged) == grpc.StatusCode.UNAVAILABLE  # a client certificate of another CA
    till = ca.issue("S-1", server=False)
    s1 = tls_credentials(ca.pem, till.cert_pem, till.key_pem)
    other_store = create_key(running.store_url, "little_sprout", "pos", "--store", "S-2", cwd=ROOT, env=ENV)
    with keyed_channel(running.target, other_store, credentials=s1) as channel:
        exc = enrol(channel, "m-tls-refused")
        assert exc is not None and exc.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(exc).reason == "STORE_NOT_ALLOWED"
        assert get_clock(channel) == grpc.StatusCode.PERMISSION_DENIED  # every call of that key, not only writes
    unbound = create_key(running.store_url, "little_sprout", "pos", cwd=ROOT, env=ENV)
    with keyed_channel(running.target, unbound, credentials=s1) as channel:
        exc = enrol(channel, "m-tls-s2", store_id="S-2")
        assert exc is not None and error_info(exc).reason == "STORE_NOT_ALLOWED"  # the certificate's store wins
        assert enrol(channel, "m-tls-s1") is None
    same_store = create_key(running.store_url, "little_sprout", "pos", "--store", "S-1", cwd=ROOT, env=ENV)
    with keyed_channel(running.target, same_store, credentials=s1) as channel:
        assert get_clock(channel) == grpc.StatusCode.OK
    with running.channel() as admin:  # an admin key over the ops console's certificate: no store binding
        pages = audit_pb2_grpc.AuditServiceStub(admin).ReplayMember(
            audit_pb2.ReplayMemberRequest(program_id="little_sprout", member_id="m-tls-s1"), timeout=10
        )
        [enrolled] = [e for page in pages for e in page.events if e.event_type == "MemberEnrolled"]
    assert enrolled.actor.store_id == "S-1"


def test_the_client_example_runs_over_mutual_tls(mtls_server: tuple[RunningServer, TestCA, Path]) -> None:
    running, _, tmp = mtls_server
    tls = ["--tls-ca", str(tmp / "client-ca.pem"), "--tls-cert", str(tmp / "ops.pem"), "--tls-key", str(tmp / "ops.key")]
    result = subprocess.run(
        [sys.executable, "-m", "clients.python.example", "--target", running.target, *tls], cwd=ROOT,
        env={**ENV, "LEDGER_API_KEY": running.api_key or ""}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "replay v" in result.stdout
