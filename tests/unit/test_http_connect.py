"""The Connect codec of the HTTP gateway: any JSON body is either the request or ``invalid_argument``; a gRPC
status becomes a Connect error with its details."""

from __future__ import annotations

import base64
import json
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.entrypoints.http.connect import ConnectError, decode_request, from_rpc_error, procedures

PROCEDURES = procedures()
UNARY = sorted(path for path, p in PROCEDURES.items() if not p.streaming)
FIELD_NAMES = sorted(
    {f.json_name for p in PROCEDURES.values() for f in p.request.DESCRIPTOR.fields}
    | {f.name for p in PROCEDURES.values() for f in p.request.DESCRIPTOR.fields}
)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    path=st.sampled_from(UNARY), document=st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=6)
)
def test_any_json_object_is_the_request_or_invalid_argument(path: str, document: dict[str, Any]) -> None:
    procedure = PROCEDURES[path]
    try:
        encoded = decode_request(procedure, "application/json", json.dumps(document).encode())
    except ConnectError as refusal:
        assert refusal.code == "invalid_argument"
        assert refusal.http_status == 400
        return
    procedure.request.FromString(encoded)  # what is forwarded is a well-formed request


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(UNARY), body=st.binary(max_size=64))
def test_any_bytes_are_the_request_or_invalid_argument(path: str, body: bytes) -> None:
    for content_type in ("application/json", "application/proto"):
        try:
            decode_request(PROCEDURES[path], content_type, body)
        except ConnectError as refusal:
            assert refusal.code == "invalid_argument"


class Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, message: str, *details: Any) -> None:
        packed = []
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        self._status = status_pb2.Status(code=code.value[0], message=message, details=packed)
        self._code, self._message = code, message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_a_status_becomes_a_connect_error_with_its_details() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="INSUFFICIENT_POINTS", domain="loyalty.v1", metadata={"available": "0"}
    )
    status, body, retry = from_rpc_error(Failed(grpc.StatusCode.FAILED_PRECONDITION, "not enough", info))
    document = json.loads(body)
    assert (status, document["code"], document["message"], retry) == (
        400,
        "failed_precondition",
        "not enough",
        None,
    )
    [detail] = document["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    value = detail["value"]
    assert error_details_pb2.ErrorInfo.FromString(base64.b64decode(value + "=" * (-len(value) % 4))) == info
    assert detail["debug"]["reason"] == "INSUFFICIENT_POINTS"


def test_codes_statuses_and_retry_after() -> None:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(1500)
    cases = {
        grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated"),
        grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
        grpc.StatusCode.NOT_FOUND: (404, "not_found"),
        grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
        grpc.StatusCode.ABORTED: (409, "aborted"),
        grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted"),
        grpc.StatusCode.CANCELLED: (499, "canceled"),
        grpc.StatusCode.INTERNAL: (500, "internal"),
        grpc.StatusCode.UNIMPLEMENTED: (501, "unimplemented"),
        grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
    }
    for code, (http_status, name) in cases.items():
        status, body, _ = from_rpc_error(Failed(code, "x"))
        assert (status, json.loads(body)["code"]) == (http_status, name)
    _, _, retry = from_rpc_error(Failed(grpc.StatusCode.RESOURCE_EXHAUSTED, "later",
                                        error_details_pb2.RetryInfo(retry_delay=delay)))  # fmt: skip
    assert retry == 2  # whole seconds, rounded up


def test_min_version_of_every_member_query_is_forwarded_from_json() -> None:
    for method in ("GetBalance", "ListLots", "GetTierState", "ListEntitlements", "ListHistory", "ListExchanges",
                   "GetHousehold"):  # fmt: skip
        procedure = PROCEDURES[f"/loyalty.v1.MemberQueryService/{method}"]
        for key, value in (("minVersion", "7"), ("min_version", 7)):
            document = {"programId": "p", "memberId": "m1", key: value}
            encoded = decode_request(procedure, "application/json", json.dumps(document).encode())
            forwarded: Any = procedure.request.FromString(encoded)
            assert forwarded.min_version == 7, method
