"""No request stops the server: hostile and out-of-range requests against the real server, on both backends.

Each refused request must come back with its documented status, write nothing (the program's events and recorded
commands are counted in the store before and after), and leave the server answering health and a good write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ledger.settings import sqlite_path
from loyalty.v1 import common_pb2, ledger_pb2, program_pb2, query_pb2
from tests.e2e.conftest import LITTLE_SPROUT, START, Program, Server, ts

pytestmark = pytest.mark.e2e

YEAR_9999 = Timestamp(seconds=253402214400)  # 9999-12-31T00:00:00Z
OPERATOR = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


# -- helpers -----------------------------------------------------------------------------------------------------


def written(server: Server, program_id: str) -> tuple[int, int]:
    """Events in the program's streams and commands recorded for it, read from the store itself."""
    query_events = "SELECT count(*) FROM events WHERE stream_id = %s OR stream_id LIKE %s"
    query_commands = "SELECT count(*) FROM commands WHERE program_id = %s"
    args = (f"program-{program_id}", f"member-{program_id}-%")
    if server.store_url.startswith("sqlite"):
        with sqlite3.connect(f"file:{sqlite_path(server.store_url)}?mode=ro", uri=True) as conn:
            events = conn.execute(query_events.replace("%s", "?"), args).fetchone()[0]
            commands = conn.execute(query_commands.replace("%s", "?"), (program_id,)).fetchone()[0]
    else:
        with psycopg.connect(server.store_url) as pg:
            events = pg.execute(query_events, args).fetchone()[0]  # type: ignore[index]
            commands = pg.execute(query_commands, (program_id,)).fetchone()[0]  # type: ignore[index]
    return int(events), int(commands)


def refused(call: Callable[[Any], Any], request: Any) -> tuple[grpc.StatusCode, Any, list[str]]:
    """Call an rpc that must fail: its code, its ErrorInfo (or None) and the fields its BadRequest names."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    info = None
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return caught.value.code(), info, fields


def enroll(p: Program, member_id: str) -> ledger_pb2.EnrollMemberResponse:
    return p.server.ledger.EnrollMember(
        ledger_pb2.EnrollMemberRequest(program_id=p.program_id, idempotency_key=p.key("enroll"), member_id=member_id)
    )


def still_serving(p: Program) -> None:
    """Health says SERVING and a good write goes through."""
    health = health_pb2_grpc.HealthStub(p.server.channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
    member = f"ok-{next(p.keys)}"
    assert enroll(p, member).member_id == member


def assert_invalid(p: Program, call: Callable[[Any], Any], request: Any, field: str) -> None:
    before = written(p.server, p.program_id)
    code, _, fields = refused(call, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in fields
    assert written(p.server, p.program_id) == before
    still_serving(p)


def purchase(p: Program, member_id: str, **overrides: Any) -> ledger_pb2.RecordPurchaseRequest:
    fields: dict[str, Any] = {
        "program_id": p.program_id,
        "idempotency_key": p.key("buy"),
        "member_id": member_id,
        "order_id": f"o-{next(p.keys)}",
        "lines": [ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="care", quantity=1, paid_fen=10_000)],
    }
    fields.update(overrides)
    return ledger_pb2.RecordPurchaseRequest(**fields)


# -- known cases -------------------------------------------------------------------------------------------------


def test_nul_in_idempotency_key_is_refused(program: Program) -> None:
    enroll(program, "m1")
    assert_invalid(program, program.server.ledger.RecordPurchase, purchase(program, "m1", idempotency_key="k\x001"), "idempotency_key")
    request = ledger_pb2.EnrollMemberRequest(program_id=program.program_id, idempotency_key="e\x00", member_id="m2")
    assert_invalid(program, program.server.ledger.EnrollMember, request, "idempotency_key")


def test_nul_in_correlation_id_is_refused(program: Program) -> None:
    enroll(program, "m1")
    context = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, correlation_id="corr\x00")
    assert_invalid(program, program.server.ledger.RecordPurchase, purchase(program, "m1", context=context), "context.correlation_id")


def test_control_characters_and_long_strings_are_refused(program: Program) -> None:
    enroll(program, "m1")
    ledger = program.server.ledger
    line = ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="ca\x1bre", quantity=1, paid_fen=100)
    assert_invalid(program, ledger.RecordPurchase, purchase(program, "m1", lines=[line]), "lines[0].category")
    line = ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="c" * 129, quantity=1, paid_fen=100)
    assert_invalid(program, ledger.RecordPurchase, purchase(program, "m1", lines=[line]), "lines[0].category")
    adjust = ledger_pb2.AdjustPointsRequest(
        program_id=program.program_id, idempotency_key=program.key(), context=OPERATOR, member_id="m1",
        points=10, reason_code="GOODWILL", note="n" * 1001,
    )  # fmt: skip
    assert_invalid(program, ledger.AdjustPoints, adjust, "note")
    enroll_request = ledger_pb2.EnrollMemberRequest(
        program_id=program.program_id, idempotency_key=program.key(), member_id="m3",
        identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="card\x7f")],
    )  # fmt: skip
    assert_invalid(program, ledger.EnrollMember, enroll_request, "identities[0].value")


def test_unknown_enum_and_huge_amount_are_refused(program: Program) -> None:
    enroll(program, "m1")
    context = common_pb2.RequestContext(channel=77)  # type: ignore[arg-type]
    assert_invalid(program, program.server.ledger.RecordPurchase, purchase(program, "m1", context=context), "context.channel")
    assert_invalid(program, program.server.ledger.RecordPurchase, purchase(program, "m1", points_paid=10**15), "points_paid")


def test_test_clock_at_year_9999_is_refused(server: Server) -> None:
    program_id = f"far_future_{datetime.now(UTC).strftime('%H%M%S%f')}"
    request = program_pb2.CreateProgramRequest(
        program_id=program_id, display_name="far", document=LITTLE_SPROUT, format=common_pb2.DOCUMENT_FORMAT_YAML,
        clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=YEAR_9999),
        idempotency_key="create",
    )  # fmt: skip
    code, _, fields = refused(server.programs.CreateProgram, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "clock.initial_time" in fields
    code, info, _ = refused(
        server.ledger.EnrollMember, ledger_pb2.EnrollMemberRequest(program_id=program_id, idempotency_key="e", member_id="m1")
    )
    assert code == grpc.StatusCode.NOT_FOUND and info is not None and info.reason == "PROGRAM_NOT_FOUND"
    assert written(server, program_id) == (0, 0)


def test_advance_clock_to_year_9999_is_refused(program: Program) -> None:
    enroll(program, "m1")
    request = program_pb2.AdvanceClockRequest(program_id=program.program_id, to=YEAR_9999, idempotency_key=program.key())
    assert_invalid(program, program.server.programs.AdvanceClock, request, "to")
    # The program is still usable: its clock moves and its members earn.
    assert program.advance(START + timedelta(days=1)).now.seconds > 0
    assert program.server.ledger.RecordPurchase(purchase(program, "m1")).points_earned == 100


def test_quote_at_year_9999_is_refused(program: Program) -> None:
    enroll(program, "m1")
    request = query_pb2.QuotePurchaseRequest(
        program_id=program.program_id, member_id="m1",
        context=common_pb2.RequestContext(occurred_at=YEAR_9999),
        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-WIPES-80", category="care", quantity=1, paid_fen=100)],
    )  # fmt: skip
    assert_invalid(program, program.server.query.QuotePurchase, request, "context.occurred_at")


def test_timestamp_before_1970_is_refused(program: Program) -> None:
    enroll(program, "m1")
    context = common_pb2.RequestContext(occurred_at=Timestamp(seconds=-1))
    assert_invalid(program, program.server.ledger.RecordPurchase, purchase(program, "m1", context=context), "context.occurred_at")


@pytest.mark.parametrize(
    "document",
    [
        "name: x\ntiers: " + "[" * 2000 + "]" * 2000 + "\n",
        "{a: 1}: 2\nname: x\n",
        "? {a: 1}\n: 2\nname: x\n",
        "? [a, b]\n: 2\n",
        "1: x\n",
        '{"tiers": ' + "[" * 2000 + "]" * 2000 + "}",
    ],
    ids=["yaml-2000-deep", "yaml-flow-mapping-key", "yaml-mapping-key", "yaml-list-key", "yaml-int-key", "json-2000-deep"],
)
def test_hostile_policy_document_is_refused(program: Program, document: str) -> None:
    fmt = common_pb2.DOCUMENT_FORMAT_JSON if document.startswith('{"') else common_pb2.DOCUMENT_FORMAT_YAML
    publish = program_pb2.PublishPolicyRequest(
        program_id=program.program_id, document=document, format=fmt, idempotency_key=program.key()
    )
    assert_invalid(program, program.server.programs.PublishPolicy, publish, "document")
    create = program_pb2.CreateProgramRequest(
        program_id=f"{program.program_id}_h", display_name="h", document=document, format=fmt,
        clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
        idempotency_key=program.key(),
    )  # fmt: skip
    code, _, fields = refused(program.server.programs.CreateProgram, create)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "document" in fields
    assert written(program.server, f"{program.program_id}_h") == (0, 0)
    still_serving(program)


def test_adjust_with_allow_arrears_runs_into_arrears(program: Program) -> None:
    """The reference program's clawback policy is ``arrears``: a removal with allow_arrears may go negative."""
    enroll(program, "m1")
    ledger = program.server.ledger

    def adjust(points: int, allow_arrears: bool) -> ledger_pb2.AdjustPointsRequest:
        return ledger_pb2.AdjustPointsRequest(
            program_id=program.program_id, idempotency_key=program.key(), context=OPERATOR, member_id="m1",
            points=points, reason_code="CORRECTION", note="test", allow_arrears=allow_arrears,
        )  # fmt: skip

    ledger.AdjustPoints(adjust(30, False))
    before = written(program.server, program.program_id)
    code, info, _ = refused(ledger.AdjustPoints, adjust(-50, False))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info is not None and info.reason == "INSUFFICIENT_POINTS"
    assert written(program.server, program.program_id) == before
    answer = ledger.AdjustPoints(adjust(-50, True))
    assert answer.arrears_created == 20
    assert answer.balance_after.active == 0 and answer.balance_after.arrears == 20
    assert sum(d.points for d in answer.debited) == 30
    # Later earning repays the arrears first.
    assert ledger.AdjustPoints(adjust(25, False)).arrears_repaid == 20
    assert_invalid(program, ledger.AdjustPoints, adjust(10, True), "allow_arrears")


def test_adjust_with_allow_arrears_refused_when_the_policy_caps_at_the_balance(server: Server) -> None:
    program_id = f"capped_{datetime.now(UTC).strftime('%H%M%S%f')}"
    document = LITTLE_SPROUT.replace("clawback: arrears", "clawback: cap_at_balance")
    assert document != LITTLE_SPROUT
    server.programs.CreateProgram(
        program_pb2.CreateProgramRequest(
            program_id=program_id, display_name="capped", document=document, format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
            idempotency_key="create",
        )
    )
    server.ledger.EnrollMember(ledger_pb2.EnrollMemberRequest(program_id=program_id, idempotency_key="e", member_id="m1"))
    before = written(server, program_id)
    request = ledger_pb2.AdjustPointsRequest(
        program_id=program_id, idempotency_key="a", context=OPERATOR, member_id="m1",
        points=-5, reason_code="CORRECTION", note="test", allow_arrears=True,
    )  # fmt: skip
    code, info, _ = refused(server.ledger.AdjustPoints, request)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info is not None and info.reason == "INSUFFICIENT_POINTS"
    assert dict(info.metadata) == {"requested": "5", "available": "0"}
    assert written(server, program_id) == before


def test_advance_clock_counts_the_events_it_wrote(program: Program) -> None:
    for n in range(5):
        enroll(program, f"m{n}")
        program.server.ledger.RecordPurchase(purchase(program, f"m{n}"))
    before, _ = written(program.server, program.program_id)
    answer = program.advance(START + timedelta(days=400))
    after, _ = written(program.server, program.program_id)
    assert after - before > 5  # activations, expiries, grants, and the ClockAdvanced event
    assert answer.events_written == after - before
