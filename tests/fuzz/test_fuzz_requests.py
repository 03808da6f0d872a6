"""Random and hostile requests to a few rpcs over gRPC: never INTERNAL, and a refused request writes nothing.

The server runs in this process on a SQLite store (the e2e suite covers both backends with the known cases); the
number of examples is bounded so the module runs in a few seconds.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.entrypoints.grpc.server import build_server, server_health
from loyalty.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    program_pb2,
    program_pb2_grpc,
    query_pb2,
    query_pb2_grpc,
)

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "fuzz"
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x9F), max_size=20),
    st.sampled_from(["", "m1", "\x00", "a\x00b", "x" * 129, "n" * 1001, "\u202e", "' OR 1=1 --", "%s%n", "m1\n"]),
)
TIMESTAMPS = st.builds(
    Timestamp,
    seconds=st.one_of(
        st.integers(min_value=-62135596800, max_value=253402300799), st.sampled_from([0, -1, 7258118400, 253402214400])
    ),
    nanos=st.integers(min_value=0, max_value=999_999_999),
)
ENUMS = st.integers(min_value=-5, max_value=100)

_keys = itertools.count(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Wired, grpc.Channel, Path]]:
    path = tmp_path_factory.mktemp("fuzz") / "ledger.db"
    wired = build(Settings(store_url=f"sqlite:///{path}", reference_program=False), clock=ManualClock(START))
    wired.app.create_program(PROGRAM, "Fuzz", reference_document(), "test", START, "c")
    wired.app.enroll(PROGRAM, "m1", [], None, "e1")
    server, port = build_server(wired.app, "127.0.0.1:0", max_workers=4)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield wired, channel, path
    finally:
        channel.close()
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()


def _stubs(channel: grpc.Channel) -> dict[str, Any]:
    """The RPCs the fuzz requests are sent to, by method name."""
    return {
        "RecordPurchase": ledger_pb2_grpc.LedgerServiceStub(channel).RecordPurchase,
        "AdjustPoints": ledger_pb2_grpc.LedgerServiceStub(channel).AdjustPoints,
        "EnrollMember": ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember,
        "QuotePurchase": query_pb2_grpc.MemberQueryServiceStub(channel).QuotePurchase,
        "AdvanceClock": program_pb2_grpc.ProgramServiceStub(channel).AdvanceClock,
    }


def log_size(path: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        commands = conn.execute("SELECT count(*) FROM commands").fetchone()[0]
    return int(events), int(commands)


def contexts() -> st.SearchStrategy[common_pb2.RequestContext]:
    return st.builds(
        common_pb2.RequestContext,
        channel=ENUMS,
        store_id=HOSTILE_TEXT,
        terminal_id=HOSTILE_TEXT,
        operator_id=HOSTILE_TEXT,
        correlation_id=HOSTILE_TEXT,
        occurred_at=st.one_of(st.none(), TIMESTAMPS),
    )


def lines() -> st.SearchStrategy[list[ledger_pb2.OrderLine]]:
    line = st.builds(
        ledger_pb2.OrderLine, line_id=HOSTILE_TEXT, sku=HOSTILE_TEXT, category=HOSTILE_TEXT, quantity=INT64, paid_fen=INT64
    )
    return st.lists(line, max_size=3)


def key() -> st.SearchStrategy[str]:
    return st.one_of(HOSTILE_TEXT, st.builds(lambda: f"fz-{next(_keys)}"))


REQUESTS = st.one_of(
    st.builds(
        lambda c, k, m, o, ls, t, p: ("RecordPurchase", ledger_pb2.RecordPurchaseRequest(
            program_id=PROGRAM, idempotency_key=k, context=c, member_id=m, order_id=o, lines=ls,
            order_total_fen=t, points_paid=p,
        )),
        contexts(), key(), st.one_of(st.just("m1"), HOSTILE_TEXT), HOSTILE_TEXT, lines(), INT64, INT64,
    ),
    st.builds(
        lambda c, k, m, p, r, n, a: ("AdjustPoints", ledger_pb2.AdjustPointsRequest(
            program_id=PROGRAM, idempotency_key=k, context=c, member_id=m, points=p, reason_code=r, note=n,
            allow_arrears=a,
        )),
        contexts(), key(), st.one_of(st.just("m1"), HOSTILE_TEXT), INT64, HOSTILE_TEXT, HOSTILE_TEXT, st.booleans(),
    ),
    st.builds(
        lambda c, k, m, kind, v: ("EnrollMember", ledger_pb2.EnrollMemberRequest(
            program_id=PROGRAM, idempotency_key=k, context=c, member_id=m,
            identities=[common_pb2.ChannelIdentity(kind=kind, value=v)],
        )),
        contexts(), key(), HOSTILE_TEXT, ENUMS, HOSTILE_TEXT,
    ),
    st.builds(
        lambda c, m, ls: ("QuotePurchase", query_pb2.QuotePurchaseRequest(
            program_id=PROGRAM, context=c, member_id=m, lines=ls,
        )),
        contexts(), st.one_of(st.just("m1"), HOSTILE_TEXT), lines(),
    ),
    st.builds(
        lambda c, k, t: ("AdvanceClock", program_pb2.AdvanceClockRequest(
            program_id=PROGRAM, idempotency_key=k, context=c, to=t,
        )),
        contexts(), key(), TIMESTAMPS,
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(REQUESTS)
def test_hostile_requests_never_fail_internally(served: tuple[Wired, grpc.Channel, Path], named: tuple[str, Any]) -> None:
    _, channel, path = served
    method, request = named
    stubs = _stubs(channel)
    before = log_size(path)
    try:
        stubs[method](request, timeout=30)
    except grpc.RpcError as err:
        assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, err.details())
        assert log_size(path) == before, f"{method} was refused with {err.code()} but wrote"


# -- the same requests with valid, foreign, revoked and garbage credentials, through the authenticator ----------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[grpc.Channel, Path, dict[str, str | None]]]:
    from ledger.entrypoints.grpc.auth import Authenticator

    path = tmp_path_factory.mktemp("fuzz-auth") / "ledger.db"
    wired = build(Settings(store_url=f"sqlite:///{path}", reference_program=False), clock=ManualClock(START))
    wired.app.create_program(PROGRAM, "Fuzz", reference_document(), "test", START, "c")
    wired.app.create_program("other", "Other", reference_document(), "test", START, "c2")
    wired.app.enroll(PROGRAM, "m1", [], None, "e1")
    revoked, revoked_token = wired.keys.issue(PROGRAM, "admin", name="revoked")
    wired.keys.revoke(revoked.key_id)
    tokens: dict[str, str | None] = {
        "none": None,
        "admin": wired.keys.issue("*", "admin")[1],
        "pos": wired.keys.issue(PROGRAM, "pos", store_id="S-1")[1],
        "auditor": wired.keys.issue(PROGRAM, "auditor")[1],
        "other program": wired.keys.issue("other", "operator")[1],
        "revoked": revoked_token,
        "garbage": "lk_notakey_" + "x" * 40,
        "malformed": "not a key at all",
    }
    server, port = build_server(
        wired.app, "127.0.0.1:0", max_workers=4, interceptors=[Authenticator(wired.keys)]
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, path, tokens
    finally:
        channel.close()
        server_health.pop(server, None)
        server.stop(None)
        wired.app.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(REQUESTS, st.sampled_from(["none", "admin", "pos", "auditor", "other program", "revoked", "garbage", "malformed"]))
def test_hostile_requests_with_any_credential_never_fail_internally_nor_write_when_refused(
    guarded: tuple[grpc.Channel, Path, dict[str, str | None]], named: tuple[str, Any], who: str
) -> None:
    channel, path, tokens = guarded
    method, request = named
    stubs = _stubs(channel)
    token = tokens[who]
    metadata = [("authorization", f"Bearer {token}")] if token is not None else []
    before = log_size(path)
    try:
        stubs[method](request, timeout=30, metadata=metadata)
    except grpc.RpcError as err:
        assert err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, who, err.details())
        assert log_size(path) == before, f"{method} by {who} was refused with {err.code()} but wrote"
        if who in ("none", "revoked", "garbage", "malformed"):
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (method, who, err.code())
        if who == "auditor" and method != "QuotePurchase" and err.code() != grpc.StatusCode.NOT_FOUND:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (method, err.code())
    else:
        assert who in ("admin", "pos", "other program"), f"{method} answered OK to {who}"
        if who == "pos":
            assert method not in ("AdjustPoints", "AdvanceClock"), f"a pos key was allowed {method}"
