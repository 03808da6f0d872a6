"""The gRPC API end to end: a real server process, a fresh test-clock program per test."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from ledger.domain import events as ev
from ledger.domain.decide.context import effective_tier
from ledger.domain.evolve import evolve
from ledger.domain.state import Balances, MemberState
from loyalty.v1 import audit_pb2, common_pb2, ledger_pb2, member_pb2, program_pb2, query_pb2
from policies import little_sprout
from tests.e2e.conftest import LITTLE_SPROUT, START, Program, Server, dt, ts

pytestmark = pytest.mark.e2e

SERVICES = (
    "loyalty.v1.ProgramService",
    "loyalty.v1.LedgerService",
    "loyalty.v1.MemberQueryService",
    "loyalty.v1.AuditService",
)

# -- helpers -----------------------------------------------------------------------------------------------


def failure(
    call: Callable[[Any], Any], request: Any
) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo | None, error_details_pb2.BadRequest | None]:
    """Call an rpc that must fail; return (code, ErrorInfo or None, BadRequest or None)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    err = caught.value
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    info: error_details_pb2.ErrorInfo | None = None
    bad: error_details_pb2.BadRequest | None = None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
    return err.code(), info, bad


def enroll(p: Program, member_id: str, card: str | None = None) -> ledger_pb2.EnrollMemberResponse:
    identities = [common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=card)] if card else []
    return p.server.ledger.EnrollMember(
        ledger_pb2.EnrollMemberRequest(
            program_id=p.program_id, idempotency_key=p.key("enroll"), member_id=member_id, identities=identities
        )
    )


def formula_purchase(p: Program, member_id: str, order_id: str, key: str | None = None, paid_fen: int = 10_000):
    return ledger_pb2.RecordPurchaseRequest(
        program_id=p.program_id,
        idempotency_key=key or p.key("buy"),
        context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1"),
        member_id=member_id,
        order_id=order_id,
        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-FORMULA-900G", category="infant_formula", quantity=1, paid_fen=paid_fen)],
    )


def credit(p: Program, member_id: str, points: int) -> ledger_pb2.AdjustPointsResponse:
    return p.server.ledger.AdjustPoints(
        ledger_pb2.AdjustPointsRequest(
            program_id=p.program_id,
            idempotency_key=p.key("adjust"),
            context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1"),
            member_id=member_id,
            points=points,
            reason_code="GOODWILL",
            note="test credit",
        )
    )


def hold(p: Program, member_id: str, hold_id: str, points: int, order_total_fen: int = 10_000_000, order_id: str | None = None):
    return ledger_pb2.HoldPointsRequest(
        program_id=p.program_id,
        idempotency_key=p.key("hold"),
        context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_WEB_MALL),
        member_id=member_id,
        hold_id=hold_id,
        points=points,
        order_id=order_id or f"O-{hold_id}",
        order_total_fen=order_total_fen,
    )


def replay_pages(p: Program, member_id: str, after_version: int = 0, page_size: int = 0) -> list[audit_pb2.ReplayMemberResponse]:
    request = audit_pb2.ReplayMemberRequest(
        program_id=p.program_id, member_id=member_id, after_version=after_version, page_size=page_size
    )
    return list(p.server.audit.ReplayMember(request, timeout=30))


def replayed(p: Program, member_id: str, after_version: int = 0, page_size: int = 0) -> list[audit_pb2.ReplayedEvent]:
    """The replayed events: the streamed pages, concatenated."""
    return [e for page in replay_pages(p, member_id, after_version, page_size) for e in page.events]


def balance(p: Program, member_id: str) -> member_pb2.Balance:
    return p.server.query.GetBalance(query_pb2.GetBalanceRequest(program_id=p.program_id, member_id=member_id)).balance


# -- server ------------------------------------------------------------------------------------------------


def test_health_serving_for_every_service(server: Server):
    health = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", *SERVICES):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    code, _, _ = failure(lambda r: health.Check(r, timeout=5), health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services(server: Server):
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert set(SERVICES) <= names
    assert "grpc.health.v1.Health" in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names


# -- programs ----------------------------------------------------------------------------------------------


def test_create_program_and_clock(program: Program):
    clock = program.server.programs.GetClock(program_pb2.GetClockRequest(program_id=program.program_id))
    assert clock.kind == program_pb2.CLOCK_KIND_TEST
    assert dt(clock.now) == START
    assert clock.time_zone == "Asia/Shanghai"
    policy = program.server.programs.GetPolicy(
        program_pb2.GetPolicyRequest(program_id=program.program_id, format=common_pb2.DOCUMENT_FORMAT_JSON)
    )
    assert policy.version == 1
    assert policy.document.lstrip().startswith("{")
    assert [v.version for v in policy.versions] == [1]
    assert policy.versions[0].in_force


def test_create_program_twice_with_another_key_is_program_exists(program: Program):
    code, info, _ = failure(
        program.server.programs.CreateProgram,
        program_pb2.CreateProgramRequest(
            program_id=program.program_id,
            display_name="again",
            document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
            idempotency_key="another-key",
        ),
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert info is not None and info.reason == "PROGRAM_EXISTS"


def test_invalid_policy_document_names_the_document(server: Server):
    code, _, bad = failure(
        server.programs.CreateProgram,
        program_pb2.CreateProgramRequest(
            program_id="ls_bad_doc",
            display_name="bad",
            document="name: x\ntimezone: Nowhere/Land\n",
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_TEST, initial_time=ts(START)),
            idempotency_key="bad-doc",
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and {v.field for v in bad.field_violations} == {"document"}
    assert all(v.description.startswith("document: ") for v in bad.field_violations)


def test_advance_clock_on_real_clock_program_is_refused(server: Server):
    server.programs.CreateProgram(
        program_pb2.CreateProgramRequest(
            program_id="ls_real_clock",
            display_name="real",
            document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            clock=program_pb2.ClockSettings(kind=program_pb2.CLOCK_KIND_REAL),
            idempotency_key="create-real",
        )
    )
    code, info, _ = failure(
        server.programs.AdvanceClock,
        program_pb2.AdvanceClockRequest(program_id="ls_real_clock", to=ts(START), idempotency_key="adv-real"),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "NOT_ON_TEST_CLOCK" and info.domain == "loyalty.v1"
    assert info.metadata["program_id"] == "ls_real_clock"


def test_clock_does_not_move_backwards(program: Program):
    code, info, _ = failure(
        program.server.programs.AdvanceClock,
        program_pb2.AdvanceClockRequest(
            program_id=program.program_id, to=ts(START - timedelta(hours=1)), idempotency_key="back"
        ),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "CLOCK_NOT_FORWARD"


# -- members -----------------------------------------------------------------------------------------------


def test_enroll_and_lookup(program: Program):
    enrolled = enroll(program, "m-1", card="CARD-0001")
    assert enrolled.member_id == "m-1"
    assert enrolled.tier == "regular"
    assert enrolled.policy_version == 1
    assert dt(enrolled.enrolled_at) == START
    found = program.server.query.LookupMember(
        query_pb2.LookupMemberRequest(
            program_id=program.program_id,
            identity=common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="CARD-0001"),
        )
    )
    assert found.member_id == "m-1"
    assert found.status == query_pb2.MEMBER_STATUS_ACTIVE
    assert found.tier == "regular"
    assert found.balance.member_id == "m-1"
    code, info, _ = failure(
        program.server.query.LookupMember,
        query_pb2.LookupMemberRequest(
            program_id=program.program_id,
            identity=common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="CARD-9999"),
        ),
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert info is not None and info.reason == "MEMBER_NOT_FOUND"


def test_enroll_twice_is_member_exists(program: Program):
    enroll(program, "m-1")
    code, info, _ = failure(
        program.server.ledger.EnrollMember,
        ledger_pb2.EnrollMemberRequest(program_id=program.program_id, idempotency_key="other", member_id="m-1"),
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert info is not None and info.reason == "MEMBER_EXISTS"
    assert dict(info.metadata) == {"id": "m-1"}


def test_identity_taken_names_the_kind_and_the_holder(program: Program):
    enroll(program, "m-1", card="CARD-7")
    code, info, _ = failure(
        program.server.ledger.EnrollMember,
        ledger_pb2.EnrollMemberRequest(
            program_id=program.program_id,
            idempotency_key=program.key("enroll"),
            member_id="m-2",
            identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="CARD-7")],
        ),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "IDENTITY_TAKEN"
    assert dict(info.metadata) == {"kind": "CARD_NUMBER", "member_id": "m-1"}


def test_policy_effective_in_the_past_is_effective_from_too_early(program: Program):
    code, info, _ = failure(
        program.server.programs.PublishPolicy,
        program_pb2.PublishPolicyRequest(
            program_id=program.program_id,
            document=LITTLE_SPROUT,
            format=common_pb2.DOCUMENT_FORMAT_YAML,
            effective_from=ts(START - timedelta(days=1)),
            idempotency_key=program.key("publish"),
        ),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "EFFECTIVE_FROM_TOO_EARLY"
    assert datetime.fromisoformat(info.metadata["earliest_allowed"]) == START


def test_unknown_member_is_not_found(program: Program):
    code, info, _ = failure(
        program.server.query.GetBalance, query_pb2.GetBalanceRequest(program_id=program.program_id, member_id="nobody")
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert info is not None and info.reason == "MEMBER_NOT_FOUND" and info.metadata["id"] == "nobody"
    code, info, _ = failure(program.server.ledger.RecordPurchase, formula_purchase(program, "nobody", "A-1"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert info is not None and info.reason == "MEMBER_NOT_FOUND"


def test_unknown_program_is_not_found(server: Server):
    code, info, _ = failure(server.query.GetBalance, query_pb2.GetBalanceRequest(program_id="no_such_program", member_id="m"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert info is not None and info.reason == "PROGRAM_NOT_FOUND"


# -- earning -----------------------------------------------------------------------------------------------


def test_purchase_earns_pending_points_that_activate_after_seven_days(program: Program):
    enroll(program, "m-1")
    bought = program.server.ledger.RecordPurchase(formula_purchase(program, "m-1", "A-1001"))
    assert bought.points_earned == 50  # 100.00 CNY of infant formula at 1/2 point per CNY, regular tier x1
    assert bought.growth_earned == 100
    assert bought.lines[0].rate == "1/2"
    assert bought.lines[0].base_points == 50
    assert bought.tier_at_sale == "regular"
    assert bought.policy_version == 1
    assert bought.lot_id
    assert dt(bought.active_at) == START + timedelta(days=7)
    assert not bought.replayed

    before = balance(program, "m-1")
    assert (before.active, before.pending, before.held, before.available, before.arrears) == (0, 50, 0, 0, 0)

    advanced = program.advance(START + timedelta(days=7))
    assert advanced.activations == 1
    assert dt(advanced.previous_time) == START
    assert dt(advanced.now) == START + timedelta(days=7)

    after = balance(program, "m-1")
    assert (after.active, after.pending, after.held, after.available, after.arrears) == (50, 0, 0, 50, 0)
    assert after.lifetime_earned == 50
    assert dt(after.as_of) == START + timedelta(days=7)
    assert after.next_expiry_points == 50

    lots = program.server.query.ListLots(query_pb2.ListLotsRequest(program_id=program.program_id, member_id="m-1"))
    assert [(lot.lot_id, lot.amount, lot.remaining, lot.status) for lot in lots.lots] == [
        (bought.lot_id, 50, 50, member_pb2.LOT_STATUS_ACTIVE)
    ]
    assert lots.lots[0].source == member_pb2.LOT_SOURCE_PURCHASE and lots.lots[0].order_id == "A-1001"


def test_quote_matches_the_purchase(program: Program):
    enroll(program, "m-1")
    req = formula_purchase(program, "m-1", "A-1")
    quote = program.server.query.QuotePurchase(
        query_pb2.QuotePurchaseRequest(program_id=program.program_id, member_id="m-1", order_id="A-1", lines=req.lines)
    )
    assert quote.points_earned == 50 and not quote.already_recorded
    program.server.ledger.RecordPurchase(req)
    again = program.server.query.QuotePurchase(
        query_pb2.QuotePurchaseRequest(program_id=program.program_id, member_id="m-1", order_id="A-1", lines=req.lines)
    )
    assert again.already_recorded
    assert balance(program, "m-1").pending == 50  # the quotes wrote nothing


def test_idempotent_retry_and_key_reuse(program: Program):
    enroll(program, "m-1")
    first = program.server.ledger.RecordPurchase(formula_purchase(program, "m-1", "A-1", key="sale-1"))
    retry = program.server.ledger.RecordPurchase(formula_purchase(program, "m-1", "A-1", key="sale-1"))
    assert not first.replayed and retry.replayed
    assert (retry.points_earned, retry.lot_id, retry.growth_earned) == (first.points_earned, first.lot_id, first.growth_earned)
    code, info, _ = failure(
        program.server.ledger.RecordPurchase, formula_purchase(program, "m-1", "A-2", key="sale-1", paid_fen=20_000)
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert info is not None and info.reason == "IDEMPOTENCY_KEY_REUSED"
    assert info.metadata["idempotency_key"] == "sale-1"
    assert balance(program, "m-1").pending == 50  # earned once


def test_invalid_argument_names_every_bad_field(program: Program):
    enroll(program, "m-1")
    req = formula_purchase(program, "m-1", "")
    req.lines[0].paid_fen = -5
    req.lines.add(line_id="1", sku="X", quantity=0, paid_fen=1)
    code, _, bad = failure(program.server.ledger.RecordPurchase, req)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None
    fields = {v.field for v in bad.field_violations}
    assert {"order_id", "lines[0].paid_fen", "lines[1].line_id", "lines[1].quantity"} <= fields
    code, _, bad = failure(
        program.server.query.GetBalance, query_pb2.GetBalanceRequest(program_id="Bad-Id", member_id="m-1")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and [v.field for v in bad.field_violations] == ["program_id"]
    code, _, bad = failure(
        program.server.ledger.HoldPoints,
        ledger_pb2.HoldPointsRequest(
            program_id=program.program_id, member_id="m-1", hold_id="H-1", points=10, order_id="O", order_total_fen=100
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and [v.field for v in bad.field_violations] == ["idempotency_key"]


def test_sale_older_than_offline_window_is_refused(program: Program):
    enroll(program, "m-1")
    program.advance(START + timedelta(days=40))
    req = formula_purchase(program, "m-1", "OLD-1")
    req.context.occurred_at.CopyFrom(ts(START + timedelta(days=40) - timedelta(days=31)))
    code, info, _ = failure(program.server.ledger.RecordPurchase, req)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "OUTSIDE_OFFLINE_WINDOW"
    assert info.metadata["window_days"] == "30"
    assert "earliest_allowed" in info.metadata
    # Within the window it earns, under the business time.
    req2 = formula_purchase(program, "m-1", "OLD-2")
    req2.context.occurred_at.CopyFrom(ts(START + timedelta(days=40) - timedelta(days=29)))
    assert program.server.ledger.RecordPurchase(req2).points_earned == 50


# -- redemption --------------------------------------------------------------------------------------------


def test_hold_commit_release(program: Program):
    enroll(program, "m-1")
    credit(program, "m-1", 1000)
    held = program.server.ledger.HoldPoints(hold(program, "m-1", "H-1", 100, order_total_fen=100_000))
    assert held.held_points == 100 and held.cash_value_fen == 100 and held.cap_points == 10_000
    assert held.available_after == 900
    assert dt(held.expires_at) == START + timedelta(minutes=15)
    b = balance(program, "m-1")
    assert (b.active, b.held, b.available) == (1000, 100, 900)

    committed = program.server.ledger.CommitHold(
        ledger_pb2.CommitHoldRequest(program_id=program.program_id, idempotency_key=program.key(), member_id="m-1", hold_id="H-1", points=60)
    )
    assert (committed.committed_points, committed.released_points, committed.available_after) == (60, 40, 940)
    assert committed.cash_value_fen == 60
    assert sum(lot.points for lot in committed.lots) == 60

    program.server.ledger.HoldPoints(hold(program, "m-1", "H-2", 200))
    released = program.server.ledger.ReleaseHold(
        ledger_pb2.ReleaseHoldRequest(program_id=program.program_id, idempotency_key=program.key(), member_id="m-1", hold_id="H-2")
    )
    assert released.status == ledger_pb2.HOLD_STATUS_RELEASED and released.released_points == 200
    b = balance(program, "m-1")
    assert (b.active, b.held, b.available, b.lifetime_redeemed) == (940, 0, 940, 60)

    code, info, _ = failure(
        program.server.ledger.ReleaseHold,
        ledger_pb2.ReleaseHoldRequest(program_id=program.program_id, idempotency_key=program.key(), member_id="m-1", hold_id="H-2"),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "HOLD_NOT_OPEN"


def test_redemption_cap_and_insufficient_points(program: Program):
    enroll(program, "m-1")
    credit(program, "m-1", 300)
    code, info, _ = failure(program.server.ledger.HoldPoints, hold(program, "m-1", "H-1", 200, order_total_fen=1000))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "REDEMPTION_CAP_EXCEEDED"
    assert info.metadata["cap_points"] == "100"  # 10% of 10.00 CNY at Regular, 1 point = 1 fen
    assert info.metadata["requested"] == "200"
    assert info.metadata["tier"] == "regular"

    code, info, _ = failure(program.server.ledger.HoldPoints, hold(program, "m-1", "H-2", 500))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "INSUFFICIENT_POINTS"
    assert (info.metadata["available"], info.metadata["requested"]) == ("300", "500")
    assert balance(program, "m-1").held == 0  # refusals wrote nothing


def test_concurrent_holds_never_overspend(program: Program):
    enroll(program, "m-1")
    credit(program, "m-1", 1000)
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def attempt(i: int) -> None:
        req = hold(program, "m-1", f"H-{i}", 100)
        barrier.wait()
        try:
            program.server.ledger.HoldPoints(req)
            outcome = "ok"
        except grpc.RpcError as err:
            status = rpc_status.from_call(err)  # type: ignore[arg-type]
            info = error_details_pb2.ErrorInfo()
            assert status is not None and status.details[0].Unpack(info)
            outcome = info.reason
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count("ok") == 10
    assert results.count("INSUFFICIENT_POINTS") == 10
    b = balance(program, "m-1")
    assert (b.active, b.held, b.available) == (1000, 1000, 0)


def test_hold_times_out_after_fifteen_minutes(program: Program):
    enroll(program, "m-1")
    credit(program, "m-1", 500)
    program.server.ledger.HoldPoints(hold(program, "m-1", "H-1", 100))
    advanced = program.advance(START + timedelta(minutes=15, seconds=1))
    assert advanced.holds_released == 1
    assert balance(program, "m-1").available == 500
    code, info, _ = failure(
        program.server.ledger.CommitHold,
        ledger_pb2.CommitHoldRequest(program_id=program.program_id, idempotency_key=program.key(), member_id="m-1", hold_id="H-1"),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "HOLD_EXPIRED" and info.metadata["hold_id"] == "H-1"


# -- refunds -----------------------------------------------------------------------------------------------


def test_partial_and_full_refund(program: Program):
    enroll(program, "m-1")
    req = formula_purchase(program, "m-1", "A-1")
    req.lines.add(line_id="2", sku="LS-TOY-01", category="toys", quantity=1, paid_fen=5_000)
    bought = program.server.ledger.RecordPurchase(req)
    assert bought.points_earned == 100  # 50 formula (half rate) + 50 toys

    def refund(refund_id: str, *, whole: bool = False, lines=()):
        return ledger_pb2.RefundPurchaseRequest(
            program_id=program.program_id, idempotency_key=program.key("refund"), member_id="m-1", order_id="A-1",
            refund_id=refund_id, whole_order=whole, lines=[ledger_pb2.RefundLine(line_id=a, refunded_fen=b) for a, b in lines],
        )

    partial = program.server.ledger.RefundPurchase(refund("R-1", lines=[("1", 5_000)]))
    assert partial.refunded_fen == 5_000
    assert partial.points_taken_back == 25
    assert [(x.line_id, x.refunded_fen, x.refunded_fen_total, x.points_taken_back) for x in partial.lines] == [("1", 5_000, 5_000, 25)]
    assert balance(program, "m-1").pending == 75

    code, info, _ = failure(program.server.ledger.RefundPurchase, refund("R-2", lines=[("1", 6_000)]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info is not None and info.reason == "REFUND_EXCEEDS_LINE"
    assert (info.metadata["paid_fen"], info.metadata["refunded_fen"], info.metadata["requested_fen"]) == ("10000", "5000", "6000")

    code, _, bad = failure(program.server.ledger.RefundPurchase, refund("R-3", lines=[("9", 100)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and bad.field_violations[0].field == "lines[0].line_id"

    full = program.server.ledger.RefundPurchase(refund("R-4", whole=True))
    assert full.refunded_fen == 10_000
    assert full.points_taken_back == 75
    b = balance(program, "m-1")
    assert (b.active, b.pending, b.arrears) == (0, 0, 0)


# -- audit -------------------------------------------------------------------------------------------------


def test_replay_streams_events_with_running_balance_and_verifies(program: Program):
    enroll(program, "m-1")
    program.server.ledger.RecordPurchase(formula_purchase(program, "m-1", "A-1"))
    program.advance(START + timedelta(days=8))
    credit(program, "m-1", 10)
    replay = replayed(program, "m-1")
    types = [r.event_type for r in replay]
    assert types[:2] == ["MemberEnrolled", "PurchaseRecorded"]
    assert "LotActivated" in types and types[-1] == "PointsAdjusted"
    assert [r.version for r in replay] == list(range(1, len(replay) + 1))
    assert replay[0].prev_hash == "0" * 64
    for previous, current in itertools.pairwise(replay):
        assert current.prev_hash == previous.hash
    purchase = replay[1]
    assert (purchase.balance_after.pending, purchase.points_delta, purchase.growth_delta) == (50, 50, 100)
    assert purchase.rule and purchase.policy_version == 1
    assert purchase.actor.channel == common_pb2.CHANNEL_POS and purchase.actor.store_id == "S-1"
    assert '"order_id":"A-1"' in purchase.payload_json.replace(" ", "")
    activated = replay[types.index("LotActivated")]
    assert (activated.balance_after.active, activated.balance_after.pending, activated.points_delta) == (50, 0, 0)
    assert replay[-1].balance_after.active == 60
    assert sum(r.points_delta for r in replay) == 60

    tail = replayed(program, "m-1", after_version=len(replay) - 1)
    assert [r.version for r in tail] == [len(replay)]

    verified = program.server.audit.VerifyMember(audit_pb2.VerifyMemberRequest(program_id=program.program_id, member_id="m-1"))
    assert verified.ok, verified.first_problem
    assert verified.events_checked == len(replay)
    assert verified.head_hash == replay[-1].hash

    history = program.server.query.ListHistory(
        query_pb2.ListHistoryRequest(program_id=program.program_id, member_id="m-1", page_size=2)
    )
    assert [e.version for e in history.entries] == [len(replay), len(replay) - 1]
    assert history.next_page_token
    older = program.server.query.ListHistory(
        query_pb2.ListHistoryRequest(program_id=program.program_id, member_id="m-1", page_size=500, page_token=history.next_page_token)
    )
    assert [e.version for e in older.entries] == list(range(len(replay) - 2, 0, -1))
    assert not older.next_page_token

    summary = list(program.server.audit.VerifyProgram(audit_pb2.VerifyProgramRequest(program_id=program.program_id, include_ok=True)))
    assert summary[-1].summary.ok and summary[-1].summary.members_checked == 1


def test_replay_pages_are_ordered_bounded_and_match_a_fresh_fold(program: Program):
    enroll(program, "m-1")
    for n in range(1, 6):
        program.server.ledger.RecordPurchase(formula_purchase(program, "m-1", f"A-{n}", paid_fen=n * 10_000))
    program.advance(START + timedelta(days=8))
    placed = program.server.ledger.HoldPoints(hold(program, "m-1", "H-1", 100))
    program.server.ledger.CommitHold(
        ledger_pb2.CommitHoldRequest(
            program_id=program.program_id,
            idempotency_key=program.key("commit"),
            context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_WEB_MALL),
            member_id="m-1",
            hold_id="H-1",
        )
    )
    credit(program, "m-1", 7)
    assert placed.hold_id == "H-1"

    whole = replayed(program, "m-1")  # the default page size holds them all
    count = len(whole)
    assert count > 12
    assert [len(p.events) for p in replay_pages(program, "m-1")] == [count]

    pages = replay_pages(program, "m-1", page_size=4)
    assert pages and all(1 <= len(p.events) <= 4 for p in pages)
    assert [len(p.events) for p in pages[:-1]] == [4] * (len(pages) - 1)
    paged = [e for p in pages for e in p.events]
    assert [e.version for e in paged] == list(range(1, count + 1))
    assert paged == whole

    # after_version in the middle of a page and exactly on a page boundary: the same events, paged from there.
    for after_version in (6, 8, count - 1, count):
        tail_pages = replay_pages(program, "m-1", after_version=after_version, page_size=4)
        assert all(1 <= len(p.events) <= 4 for p in tail_pages)
        tail = [e for p in tail_pages for e in p.events]
        assert [e.version for e in tail] == list(range(after_version + 1, count + 1))
        assert tail == whole[after_version:]

    # The running balances and tiers are those of a fresh fold of the payloads.
    policy = little_sprout()
    state = MemberState(program_id=program.program_id, member_id="m-1")
    for e in paged:
        before = Balances.of(state)
        evolve(state, ev.decode(e.payload_json.encode()))
        after = Balances.of(state)
        assert e.balance_after == common_pb2.BalanceSnapshot(
            active=after.active, pending=after.pending, held=after.held, available=max(after.available, 0), arrears=after.arrears
        ), e.version
        net = (after.active + after.pending - after.arrears) - (before.active + before.pending - before.arrears)
        assert e.points_delta == net, e.version
        assert e.tier_after == effective_tier(state, policy, dt(e.occurred_at)), e.version
    assert paged[-1].balance_after.active == balance(program, "m-1").active

    history = program.server.query.ListHistory(
        query_pb2.ListHistoryRequest(program_id=program.program_id, member_id="m-1", page_size=500)
    )
    assert {h.version: h.tier_after for h in history.entries} == {e.version: e.tier_after for e in whole}


def test_replay_page_size_limits(program: Program):
    enroll(program, "m-1")
    for page_size in (-1, 1001):
        code, _, bad = failure(lambda r: replay_pages(program, "m-1", page_size=r), page_size)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert bad is not None and [v.field for v in bad.field_violations] == ["page_size"]
    assert [len(p.events) for p in replay_pages(program, "m-1", page_size=1000)] == [1]
    assert replay_pages(program, "m-1", after_version=1) == []
