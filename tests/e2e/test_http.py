"""JSON over HTTP (the Connect protocol) on a real server: plain HTTP requests carrying JSON, keys made the way a
user makes them (``ledger keys create``), answers compared with the same calls over gRPC."""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2

from clients.python.loyalty_client import keyed_channel, tls_credentials
from ledger.testing.certs import TestCA
from ledger.testing.server import RunningServer, create_key, start_server, stop_server
from loyalty.v1 import audit_pb2, audit_pb2_grpc, ledger_pb2, query_pb2, query_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "LEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}
PROGRAM = "little_sprout"
MALL = "https://mall.example.com"
LEDGER = "/loyalty.v1.LedgerService/"
QUERY = "/loyalty.v1.MemberQueryService/"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any

    def detail(self, kind: type[Any]) -> Any:
        """The first Connect detail of ``kind``, decoded from its base64 protobuf ``value`` (not its debug JSON)."""
        name = kind.DESCRIPTOR.full_name
        for entry in self.body.get("details", []):
            if entry["type"] == name:
                value = entry["value"]
                return kind.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))
        raise AssertionError(f"no {name} in {self.body}")


def send(url: str, path: str, body: Any = None, *, key: str | None = None, headers: Mapping[str, str] = (),  # type: ignore[assignment]
         method: str = "POST", context: ssl.SSLContext | None = None) -> Answer:  # fmt: skip
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in dict(headers).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as reply:
            raw, status, found = reply.read(), reply.status, dict(reply.headers.items())
    except urllib.error.HTTPError as error:
        raw, status, found = error.read(), error.code, dict(error.headers.items())
    text = raw.decode()
    return Answer(
        status, found, json.loads(text) if text and found.get("Content-Type") == "application/json" else text
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("http")
    server = start_server(tmp, env=ENV, cwd=ROOT, http=True, extra_args=["--http-cors-origins", MALL])
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture(scope="module")
def till(running: RunningServer) -> str:
    return create_key(running.store_url, PROGRAM, "pos", "--name", "till-http", cwd=ROOT, env=ENV)


def new_member(url: str, key: str) -> str:
    member = f"h-{next(_numbers)}"
    enrolled = send(url, LEDGER + "EnrollMember", {"programId": PROGRAM, "idempotencyKey": f"enrol-{member}",
                                                   "memberId": member}, key=key)  # fmt: skip
    assert enrolled.status == 200, enrolled
    return member


def purchase(member: str, order: str, paid_fen: int = 5_000, key: str | None = None) -> dict[str, Any]:
    return {
        "program_id": PROGRAM, "idempotency_key": key or f"buy-{member}-{order}", "member_id": member, "order_id": order,
        "lines": [{"line_id": "1", "sku": "LS-WIPES-80", "category": "wipes", "quantity": 2, "paid_fen": paid_fen}],
        "order_total_fen": paid_fen,
    }  # fmt: skip


def test_enrol_buy_and_balance_over_http_agree_with_grpc(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    member = new_member(url, till)
    bought = send(url, LEDGER + "RecordPurchase", purchase(member, "A-1"), key=till)
    assert bought.status == 200, bought
    assert bought.headers["Content-Type"] == "application/json"
    # int64 as a string; zero values shown
    assert bought.body["pointsEarned"] == "50" and bought.body["replayed"] is False
    balance = send(url, QUERY + "GetBalance", {"programId": PROGRAM, "memberId": member}, key=till)
    assert balance.status == 200, balance
    with keyed_channel(running.target, till) as channel:
        over_grpc = query_pb2_grpc.MemberQueryServiceStub(channel).GetBalance(
            query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member), timeout=5
        )
    assert over_grpc.balance.pending == 50
    expected = json_format.MessageToDict(over_grpc, always_print_fields_with_no_presence=True)
    for answer in (balance.body, expected):
        del answer["balance"]["asOf"]  # the moment each was read
    assert balance.body == expected


def test_binary_protobuf_is_served_too(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    member = new_member(url, till)
    request = query_pb2.GetBalanceRequest(program_id=PROGRAM, member_id=member).SerializeToString()
    answer = urllib.request.urlopen(urllib.request.Request(
        url + QUERY + "GetBalance", data=request,
        headers={"Content-Type": "application/proto", "Authorization": f"Bearer {till}"},
    ), timeout=10)  # fmt: skip
    assert answer.headers["Content-Type"] == "application/proto"
    assert query_pb2.GetBalanceResponse.FromString(answer.read()).balance.member_id == member


def test_no_key_or_a_bad_key_is_unauthenticated(running: RunningServer) -> None:
    url = running.http_url
    assert url is not None
    for key in (None, "lk_0000000000000000_not-a-real-secret"):
        answer = send(url, QUERY + "GetBalance", {"programId": PROGRAM, "memberId": "m-1"}, key=key)
        assert answer.status == 401, answer
        assert answer.body["code"] == "unauthenticated"
        assert answer.detail(error_details_pb2.ErrorInfo).reason == "UNAUTHENTICATED"


def test_a_key_of_the_wrong_role_is_permission_denied(running: RunningServer) -> None:
    url = running.http_url
    assert url is not None
    auditor = create_key(running.store_url, PROGRAM, "auditor", "--name", "auditor-http", cwd=ROOT, env=ENV)
    answer = send(url, LEDGER + "RecordPurchase", purchase("h-x", "A-1"), key=auditor)
    assert answer.status == 403, answer
    assert answer.body["code"] == "permission_denied"
    info = answer.detail(error_details_pb2.ErrorInfo)
    assert (info.reason, info.metadata["permission"], info.metadata["role"]) == (
        "PERMISSION_DENIED",
        "member.write",
        "auditor",
    )


def test_a_refusal_carries_its_reason_code(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    member = new_member(url, till)
    hold = {"programId": PROGRAM, "idempotencyKey": f"hold-{member}", "memberId": member, "holdId": "H-1",
            "points": "100", "orderId": "B-1", "orderTotalFen": "100000"}  # fmt: skip
    answer = send(url, LEDGER + "HoldPoints", hold, key=till)
    assert answer.status == 400, answer
    assert answer.body["code"] == "failed_precondition"
    info = answer.detail(error_details_pb2.ErrorInfo)
    assert info.reason == "INSUFFICIENT_POINTS"
    assert (info.metadata["available"], info.metadata["requested"]) == ("0", "100")
    assert answer.body["details"][0]["debug"]["reason"] == "INSUFFICIENT_POINTS"  # readable without protobuf


def test_invalid_argument_names_the_field(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    answer = send(url, LEDGER + "RecordPurchase", purchase("h-y", "A-1", paid_fen=-5), key=till)
    assert answer.status == 400, answer
    assert answer.body["code"] == "invalid_argument"
    assert "lines[0].paid_fen" in [
        v.field for v in answer.detail(error_details_pb2.BadRequest).field_violations
    ]


def test_a_retry_gets_the_first_answer_and_another_request_under_its_key_is_refused(
    running: RunningServer, till: str
) -> None:
    url = running.http_url
    assert url is not None
    member = new_member(url, till)
    first = send(url, LEDGER + "RecordPurchase", purchase(member, "A-1"), key=till)
    again = send(url, LEDGER + "RecordPurchase", purchase(member, "A-1"), key=till)
    assert first.status == again.status == 200
    assert again.body["replayed"] is True
    assert {**again.body, "replayed": False} == first.body
    other = send(url, LEDGER + "RecordPurchase", purchase(member, "A-2", key=f"buy-{member}-A-1"), key=till)
    assert other.status == 409, other
    assert other.body["code"] == "already_exists"
    info = other.detail(error_details_pb2.ErrorInfo)
    assert (info.reason, info.metadata["idempotency_key"]) == ("IDEMPOTENCY_KEY_REUSED", f"buy-{member}-A-1")
    balance = send(url, QUERY + "GetBalance", {"programId": PROGRAM, "memberId": member}, key=till)
    assert balance.body["balance"]["pending"] == "50"  # earned once


@pytest.mark.parametrize(
    ("body", "named", "field"),
    [
        (b'{"programId": "little_sprout", "memberId":', "not JSON", ""),
        (b'["little_sprout"]', "must be a JSON object", ""),
        (b'{"programId": "little_sprout", "nope": 1}', "nope", "nope"),
        (b'{"programId": "little_sprout", "memberId": 7}', "memberId", "memberId"),
        (b'{"programId": "little_sprout", "asOf": "yesterday"}', "asOf", "asOf"),
        (b'\xff\xfe{"programId": 1}', "UTF-8", ""),
        (b'{"programId": ' + b"[" * 100_000, "nested too deeply", ""),
        (b'{"programId": "little_sprout", "asOf": ' + b'{"seconds": ' * 200 + b"1" + b"}" * 201, "", "asOf"),
    ],
)
def test_malformed_json_is_invalid_argument_naming_the_problem(
    running: RunningServer, till: str, body: bytes, named: str, field: str
) -> None:
    url = running.http_url
    assert url is not None
    answer = send(url, QUERY + "GetBalance", body, key=till)
    assert answer.status == 400, answer
    assert answer.body["code"] == "invalid_argument"
    assert named in answer.body["message"]
    assert [v.field for v in answer.detail(error_details_pb2.BadRequest).field_violations] == [field]


def raw_exchange(url: str, head: bytes, timeout: float = 10) -> bytes:
    """Send ``head`` on a fresh connection; everything the server answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_an_oversized_body_is_refused_without_being_read(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    head = (f"POST {QUERY}GetBalance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {till}\r\nContent-Length: {5 * 1024 * 1024}\r\n\r\n").encode()  # fmt: skip
    answer = raw_exchange(url, head + b"{")  # the server answers at once and closes: it waits for no 5 MiB
    assert answer.startswith(b"HTTP/1.1 429 ")
    assert b'"code": "resource_exhausted"' in answer and b"at most 4194304" in answer
    assert send(url, "/healthz", method="GET").status == 200


def test_a_malformed_request_line_and_chunked_bodies_are_answered_cleanly(running: RunningServer) -> None:
    url = running.http_url
    assert url is not None
    assert raw_exchange(url, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    chunked = raw_exchange(url, (f"POST {QUERY}GetBalance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n").encode())  # fmt: skip
    assert chunked.startswith(b"HTTP/1.1 400 ") and b"Content-Length" in chunked


def test_unknown_procedures_streams_and_other_verbs(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    unknown = send(url, "/loyalty.v1.LedgerService/MintPoints", {}, key=till)
    assert (unknown.status, unknown.body["code"]) == (404, "unimplemented")
    streaming = send(
        url, "/loyalty.v1.AuditService/ReplayMember", {"programId": PROGRAM, "memberId": "m"}, key=till
    )
    assert (streaming.status, streaming.body["code"]) == (501, "unimplemented")
    assert "gRPC only" in streaming.body["message"]
    get = send(url, QUERY + "GetBalance", method="GET", key=till)
    assert (get.status, get.headers.get("Allow")) == (405, "POST")
    wrong_type = send(url, QUERY + "GetBalance", b"program_id=little_sprout", key=till,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert (wrong_type.status, wrong_type.body["code"]) == (400, "invalid_argument")
    bad_timeout = send(
        url, QUERY + "GetBalance", {"programId": PROGRAM}, key=till, headers={"Connect-Timeout-Ms": "soon"}
    )
    assert bad_timeout.status == 400 and "Connect-Timeout-Ms" in bad_timeout.body["message"]


def test_health_over_http_needs_no_key(running: RunningServer) -> None:
    url = running.http_url
    assert url is not None
    answer = send(url, "/healthz", method="GET")
    assert (answer.status, answer.body) == (200, {"status": "SERVING"})
    connect = send(url, "/grpc.health.v1.Health/Check", {})
    assert (connect.status, connect.body) == (200, {"status": "SERVING"})


def test_cors_for_the_configured_origin_only(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    ask = {"Origin": MALL, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    preflight = send(url, QUERY + "GetBalance", method="OPTIONS", headers=ask)
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == MALL
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    stranger = send(
        url, QUERY + "GetBalance", method="OPTIONS", headers={**ask, "Origin": "https://evil.example"}
    )
    assert stranger.status == 403 and "Access-Control-Allow-Origin" not in stranger.headers
    member = new_member(url, till)
    call = send(
        url,
        QUERY + "GetBalance",
        {"programId": PROGRAM, "memberId": member},
        key=till,
        headers={"Origin": MALL},
    )
    assert call.status == 200 and call.headers["Access-Control-Allow-Origin"] == MALL
    other = send(url, QUERY + "GetBalance", {"programId": PROGRAM, "memberId": member}, key=till,
                 headers={"Origin": "https://evil.example"})  # fmt: skip
    assert "Access-Control-Allow-Origin" not in other.headers


def test_an_http_call_writes_the_access_line_of_its_grpc_call(running: RunningServer, till: str) -> None:
    url = running.http_url
    assert url is not None
    member = new_member(url, till)
    send(url, QUERY + "GetBalance", {"programId": PROGRAM, "memberId": member}, key=till)
    lines = [json.loads(line) for line in running.log_path.read_text().splitlines() if line.startswith("{")]
    access = [
        line
        for line in lines
        if line.get("event") == "rpc" and line.get("method") == "MemberQueryService/GetBalance"
    ]
    assert access and access[-1]["transport"] == "http" and access[-1]["key_id"] == till.split("_")[1]
    assert till not in running.log_path.read_text()  # the secret never


def test_https_with_the_grpc_certificate(tmp_path: Path) -> None:
    ca = TestCA("ledger http test CA")
    cert, key = ca.issue("ledger.test", server=True).write(tmp_path, "server")
    server = start_server(tmp_path, env=ENV, cwd=ROOT, http=True, credentials=tls_credentials(ca.pem),
                          extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])  # fmt: skip
    try:
        url = server.http_url
        assert url is not None and url.startswith("https://")
        trusting = ssl.create_default_context(cadata=ca.pem.decode())
        answer = send(url, "/loyalty.v1.ProgramService/GetClock", {"programId": PROGRAM}, key=server.api_key,
                      context=trusting)  # fmt: skip
        assert answer.status == 200 and answer.body["programId"] == PROGRAM
        with pytest.raises(urllib.error.URLError):  # a certificate the client does not trust
            send(url, "/healthz", method="GET", context=ssl.create_default_context())
        plain = raw_exchange(url.replace("https://", "http://"), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not plain.startswith(b"HTTP/1.1 200")  # plaintext gets no answer from the TLS listener

        new_ca = TestCA(
            "ledger http test CA, rotated"
        )  # the files change: the next connection gets the new pair
        issued = new_ca.issue("ledger.test", server=True)
        for name, data in (("server.key", issued.key_pem), ("server.pem", issued.cert_pem)):
            (tmp_path / f"{name}.new").write_bytes(data)
            os.replace(tmp_path / f"{name}.new", tmp_path / name)
        renewed = ssl.create_default_context(cadata=new_ca.pem.decode())
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(urllib.error.URLError, ssl.SSLError, ConnectionError):
                if send(url, "/healthz", method="GET", context=renewed).status == 200:
                    break
            assert time.monotonic() < deadline, (
                "the rotated certificate was not served over HTTPS within 10 s"
            )
            time.sleep(0.2)
        with pytest.raises(urllib.error.URLError):
            send(
                url, "/healthz", method="GET", context=trusting
            )  # the old certificate is no longer presented
    finally:
        stop_server(server.process)


def test_ledger_request_fields_are_what_the_gateway_decodes() -> None:
    """The names in these tests are the request's JSON names (a guard against a renamed field)."""
    fields = {f.json_name for f in ledger_pb2.HoldPointsRequest.DESCRIPTOR.fields}
    assert {
        "programId",
        "idempotencyKey",
        "memberId",
        "holdId",
        "points",
        "orderId",
        "orderTotalFen",
    } <= fields


def test_mutual_tls_over_https_and_the_certificate_names_the_store(tmp_path: Path) -> None:
    ca = TestCA("ledger http mtls CA")
    cert, key = ca.issue("ledger.test", server=True).write(tmp_path, "server")
    (tmp_path / "client-ca.pem").write_bytes(ca.pem)
    ops = ca.issue("ops-console", server=False)
    server = start_server(
        tmp_path, env=ENV, cwd=ROOT, http=True, credentials=tls_credentials(ca.pem, ops.cert_pem, ops.key_pem),
        extra_args=["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(tmp_path / "client-ca.pem"),
                    "--tls-store-from-cn"],
    )  # fmt: skip
    try:
        url = server.http_url
        assert url is not None
        no_certificate = ssl.create_default_context(cadata=ca.pem.decode())
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            send(url, "/healthz", method="GET", context=no_certificate)
        till_cert, till_key = ca.issue("S-1", server=False).write(tmp_path, "till")
        s1 = ssl.create_default_context(cadata=ca.pem.decode())
        s1.load_cert_chain(till_cert, till_key)
        unbound = create_key(server.store_url, PROGRAM, "pos", cwd=ROOT, env=ENV)
        enrol = {"programId": PROGRAM, "idempotencyKey": "enrol-m-s2", "memberId": "m-s2",
                 "context": {"channel": "CHANNEL_POS", "storeId": "S-2"}}  # fmt: skip
        other_store = send(url, LEDGER + "EnrollMember", enrol, key=unbound, context=s1)
        assert other_store.status == 403, other_store
        assert other_store.detail(error_details_pb2.ErrorInfo).reason == "STORE_NOT_ALLOWED"
        enrol = {"programId": PROGRAM, "idempotencyKey": "enrol-m-s1", "memberId": "m-s1"}
        assert send(url, LEDGER + "EnrollMember", enrol, key=unbound, context=s1).status == 200
        with server.channel() as admin:  # the event records the store the certificate named
            pages = audit_pb2_grpc.AuditServiceStub(admin).ReplayMember(
                audit_pb2.ReplayMemberRequest(program_id=PROGRAM, member_id="m-s1"), timeout=10
            )
            [enrolled] = [e for page in pages for e in page.events if e.event_type == "MemberEnrolled"]
        assert enrolled.actor.store_id == "S-1"
    finally:
        stop_server(server.process)


def test_slow_and_idle_connections_are_closed_and_connections_are_bounded(tmp_path: Path) -> None:
    env = {**ENV, "LEDGER_HTTP_READ_SECONDS": "1", "LEDGER_HTTP_MAX_CONNECTIONS": "2"}
    server = start_server(tmp_path, env=env, cwd=ROOT, http=True)
    try:
        url = server.http_url
        assert url is not None
        host, port = url.removeprefix("http://").split(":")
        slow = socket.create_connection((host, int(port)), timeout=10)
        idle = socket.create_connection((host, int(port)), timeout=10)
        slow.sendall(b"POST /loyalty.v1.MemberQueryService/GetBalance HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def trickle() -> None:  # a header byte every 0.2 s: each read gets something, the request never ends
            with contextlib.suppress(OSError):
                while not stop.wait(0.2):
                    slow.sendall(b"X")

        trickling = threading.Thread(target=trickle, daemon=True)
        trickling.start()
        third = raw_exchange(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # both slots are taken
        assert third.startswith(b"HTTP/1.1 429 ") and b"resource_exhausted" in third
        # the server closes each after a second: recv ends (its 10 s timeout would raise)
        for sock in (slow, idle):
            with sock, contextlib.suppress(ConnectionResetError):
                assert sock.recv(65536) == b""
        stop.set()
        trickling.join(timeout=5)
        assert send(url, "/healthz", method="GET").status == 200  # the slots are free again
    finally:
        stop_server(server.process)


def test_the_rate_limit_holds_over_http_and_says_when_to_retry(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=ENV, cwd=ROOT, http=True, extra_args=["--rate-limit", "1:2"])
    try:
        url = server.http_url
        assert url is not None
        key = create_key(server.store_url, PROGRAM, "pos", cwd=ROOT, env=ENV)
        answers = [
            send(url, "/loyalty.v1.ProgramService/GetClock", {"programId": PROGRAM}, key=key)
            for _ in range(3)
        ]
        assert [a.status for a in answers[:2]] == [200, 200]
        limited = answers[2]
        assert (limited.status, limited.body["code"]) == (429, "resource_exhausted")
        assert limited.detail(error_details_pb2.ErrorInfo).reason == "RATE_LIMITED"
        assert limited.detail(error_details_pb2.RetryInfo).retry_delay.ToMilliseconds() > 0
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        stop_server(server.process)


def http_from(url: str, source: str, path: str, body: dict[str, Any], key: str) -> Answer:
    """One call over a connection from the local address ``source`` (127.0.0.x: the loopback has them all)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", path, json.dumps(body).encode(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}"})  # fmt: skip
        reply = connection.getresponse()
        return Answer(reply.status, dict(reply.getheaders()), json.loads(reply.read()))
    finally:
        connection.close()


def test_failed_key_checks_count_against_the_http_callers_own_address(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, env=ENV, cwd=ROOT, http=True, extra_args=["--failed-auth-limit", "0.01:3"]
    )
    try:
        url = server.http_url
        assert url is not None
        clock = ("/loyalty.v1.ProgramService/GetClock", {"programId": PROGRAM})
        wrong = "lk_0123456789abcdef_not-the-secret"
        codes = [http_from(url, "127.0.0.2", *clock, key=wrong).body["code"] for _ in range(4)]
        assert codes == ["unauthenticated"] * 3 + ["resource_exhausted"]  # that address has spent its checks
        fresh = create_key(server.store_url, PROGRAM, "pos", cwd=ROOT, env=ENV)  # never checked: slow work
        assert (
            http_from(url, "127.0.0.3", *clock, key=fresh).status == 200
        )  # another address is not held back
        other = create_key(server.store_url, PROGRAM, "pos", cwd=ROOT, env=ENV)
        held = http_from(
            url, "127.0.0.2", *clock, key=other
        )  # not proved yet: no slow check for that address
        assert held.detail(error_details_pb2.ErrorInfo).metadata["limit"] == "failed_key_checks"
    finally:
        stop_server(server.process)
