"""The server's log, read as an operator's log shipper reads it: JSON lines, one access line per call, an
INTERNAL's error id with its stack, and no personal data."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ledger.application.keys import split_token
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import common_pb2, ledger_pb2, ledger_pb2_grpc, program_pb2, program_pb2_grpc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FAULTS = Path(__file__).resolve().parent / "faults"
PHONE = "+8613912345678"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def log_records(path: Path) -> list[dict[str, Any]]:
    """Every line of the log as JSON (a line that is not JSON fails the test)."""
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"log line {n} is not JSON: {line!r}")
    return records


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server whose log goes to a file (not a terminal: JSON by default) with a fault for program ``faulty``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_LOG_")}
    env.update(PYTHONPATH=f"{FAULTS}{os.pathsep}{ROOT}", LEDGER_SQLITE_SYNCHRONOUS="NORMAL")
    running = start_server(tmp_path, env=env, cwd=ROOT)
    try:
        yield running
    finally:
        stop_server(running.process)


def test_access_lines_errors_with_their_stack_and_no_personal_data(faulty_server: RunningServer) -> None:
    assert faulty_server.api_key is not None
    key_id = split_token(faulty_server.api_key)
    assert key_id is not None
    with faulty_server.channel() as channel:
        ledger = ledger_pb2_grpc.LedgerServiceStub(channel)
        programs = program_pb2_grpc.ProgramServiceStub(channel)
        ledger.EnrollMember(
            ledger_pb2.EnrollMemberRequest(
                program_id="little_sprout", idempotency_key="enroll-log-1", member_id="m-log-1",
                identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="C-LOG-1")],
                profile=ledger_pb2.PersonalProfile(phone=PHONE, birth_month=5, consent=True),
            ),
            metadata=(("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),),
        )  # fmt: skip
        with pytest.raises(grpc.RpcError) as caught:
            programs.GetClock(program_pb2.GetClockRequest(program_id="faulty"))
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        found = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
        assert found is not None
        info = error_details_pb2.RequestInfo()
        assert found.details[0].Unpack(info)
        error_id = info.request_id
        assert error_id
    with grpc.insecure_channel(faulty_server.target) as anonymous:
        with pytest.raises(grpc.RpcError) as refused:
            program_pb2_grpc.ProgramServiceStub(anonymous).GetClock(program_pb2.GetClockRequest(program_id="little_sprout"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stop_server(faulty_server.process)
    assert faulty_server.process.returncode == 0

    text = faulty_server.log_path.read_text()
    records = log_records(faulty_server.log_path)
    access = [r for r in records if r.get("event") == "rpc"]

    [enrolled] = [r for r in access if r["method"] == "LedgerService/EnrollMember"]
    assert enrolled["status"] == "OK" and enrolled["level"] == "info"
    assert enrolled["key_id"] == key_id[0] and enrolled["program_id"] == "little_sprout"
    assert enrolled["trace_id"] == TRACE_ID
    assert isinstance(enrolled["duration_ms"], float) and enrolled["duration_ms"] > 0
    assert "timestamp" in enrolled and enrolled["logger"] == "ledger.access"

    [failed_call] = [r for r in access if r["status"] == "INTERNAL"]
    assert failed_call["method"] == "ProgramService/GetClock" and failed_call["error_id"] == error_id
    assert failed_call["level"] == "error" and failed_call["key_id"] == key_id[0]
    [failure] = [r for r in records if r.get("event") == "rpc_failed"]
    assert failure["error_id"] == error_id and failure["level"] == "error"
    assert "Traceback (most recent call last)" in failure["exception"]
    assert "injected fault: the program directory is broken" in failure["exception"]

    [anonymous_call] = [r for r in access if r["status"] == "UNAUTHENTICATED"]
    assert anonymous_call["method"] == "ProgramService/GetClock" and "key_id" not in anonymous_call

    # The phone number (in any spelling) and the secret of the key never reach the log.
    assert PHONE not in text and PHONE.lstrip("+") not in text and PHONE[3:] not in text
    assert faulty_server.api_key not in text and key_id[1] not in text
