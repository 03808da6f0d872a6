"""Rate limits on the real server: a key over its limit gets RESOURCE_EXHAUSTED with RetryInfo, and a peer whose
key checks keep failing gets no further slow checks, while keys it proved before keep working."""

from __future__ import annotations

import os
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients.python.loyalty_client import keyed_channel
from ledger.testing.server import RunningServer, create_key, start_server, stop_server
from loyalty.v1 import program_pb2, program_pb2_grpc
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_RATE_LIMIT": "0.01:3"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server allowing 3 calls per key and 3 failed key checks per address, then one each per 100 s."""
    running = start_server(tmp_path_factory.mktemp("rate-limit"), env=ENV, cwd=ROOT,
                           extra_args=["--failed-auth-limit", "0.01:3"])  # fmt: skip
    try:
        yield running
    finally:
        stop_server(running.process)


def get_clock(target: str, key: str) -> grpc.RpcError | None:
    with keyed_channel(target, key) as channel:
        try:
            program_pb2_grpc.ProgramServiceStub(channel).GetClock(
                program_pb2.GetClockRequest(program_id="little_sprout"), timeout=10
            )
        except grpc.RpcError as exc:
            return exc
    return None


def details(exc: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    return info, retry


def test_a_key_over_its_limit_is_told_when_to_retry(limited: RunningServer) -> None:
    assert limited.api_key is not None
    assert [get_clock(limited.target, limited.api_key) for _ in range(3)] == [None, None, None]
    exc = get_clock(limited.target, limited.api_key)
    assert exc is not None and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = details(exc)
    assert (info.reason, info.metadata["limit"], info.metadata["key_id"]) == (
        "RATE_LIMITED", "key", limited.api_key.split("_")[1]
    )
    assert 1 <= retry.retry_delay.seconds <= 100


def test_failed_key_checks_are_limited_per_address(limited: RunningServer) -> None:
    proved = create_key(limited.store_url, "little_sprout", "auditor", cwd=ROOT, env=ENV)
    untried = create_key(limited.store_url, "little_sprout", "auditor", cwd=ROOT, env=ENV)
    assert get_clock(limited.target, proved) is None  # checked once with Argon2, before the failures
    wrong = untried[:-4] + ("AAAA" if not untried.endswith("AAAA") else "BBBB")
    codes = [getattr(get_clock(limited.target, wrong), "code", lambda: None)() for _ in range(3)]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
    for key in (wrong, untried, "lk_0123456789abcdef_unknown"):  # no Argon2 and no log read for them now
        exc = get_clock(limited.target, key)
        assert exc is not None and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, key
        info, _ = details(exc)
        assert (info.reason, info.metadata["limit"]) == ("RATE_LIMITED", "failed_key_checks")
        assert untried.split("_", 2)[2] not in (exc.details() or "")
    assert get_clock(limited.target, proved) is None  # a key this server proved before still works
