"""Random and hostile KeyService requests over gRPC: never INTERNAL or UNKNOWN, and a refused one issues nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build
from ledger.entrypoints.grpc.server import build_server, server_health
from loyalty.v1 import keys_pb2, keys_pb2_grpc

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "*", "p1", "\x00", "x" * 129, "0123456789abcdef", "S-1", "a b", "\u202e"]),
)
TIMESTAMPS = st.builds(
    Timestamp,
    seconds=st.integers(min_value=-62135596800, max_value=253402300799),
    nanos=st.integers(min_value=0, max_value=999_999_999),
)
REQUESTS = st.one_of(
    st.builds(lambda p, r, s, n, e: ("CreateKey", keys_pb2.CreateKeyRequest(
        program_id=p, role=r, store_id=s, name=n, expires_at=e)),
        TEXT, st.integers(min_value=-3, max_value=9), TEXT, TEXT, st.one_of(st.none(), TIMESTAMPS)),
    st.builds(lambda p: ("ListKeys", keys_pb2.ListKeysRequest(program_id=p)), TEXT),
    st.builds(lambda k: ("RevokeKey", keys_pb2.RevokeKeyRequest(key_id=k)), TEXT),
)  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Wired, keys_pb2_grpc.KeyServiceStub]]:
    path = tmp_path_factory.mktemp("fuzz-keys") / "ledger.db"
    wired = build(Settings(store_url=f"sqlite:///{path}", reference_program=False), clock=ManualClock(START))
    server, port = build_server(wired.app, "127.0.0.1:0", max_workers=4, keys=wired.keys)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield wired, keys_pb2_grpc.KeyServiceStub(channel)
    finally:
        channel.close()
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(REQUESTS)
def test_hostile_key_requests_never_fail_inside(served: tuple[Wired, Any], case: tuple[str, Any]) -> None:
    wired, stub = served
    name, request = case
    before = len(wired.keys.listed())
    try:
        getattr(stub, name)(request, timeout=30)
    except grpc.RpcError as exc:
        assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (name, request, exc.details())
        assert len(wired.keys.listed()) == before  # a refused request issues nothing
