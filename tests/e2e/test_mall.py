"""The points mall over a real gRPC server (SQLite and PostgreSQL): exchange, refuse with the rule's reason,
answer a retry once, cancel back into the lots, through the raw stubs and the Python client."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient
from loyalty.v1 import common_pb2, ledger_pb2, member_pb2, query_pb2
from tests.e2e.conftest import START, Program, dt
from tests.e2e.test_api import enroll, failure

pytestmark = pytest.mark.e2e

APP = common_pb2.RequestContext(channel=common_pb2.CHANNEL_MINI_PROGRAM)
CONSOLE = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


def credit(p: Program, member_id: str, points: int) -> None:
    p.server.ledger.AdjustPoints(
        ledger_pb2.AdjustPointsRequest(
            program_id=p.program_id, idempotency_key=p.key("adj"), context=CONSOLE, member_id=member_id,
            points=points, reason_code="GOODWILL", note="opening",
        )
    )  # fmt: skip


def exchange_request(
    p: Program, member_id: str, exchange_id: str, reward_id: str, key: str | None = None
) -> ledger_pb2.ExchangePointsRequest:
    return ledger_pb2.ExchangePointsRequest(
        program_id=p.program_id, idempotency_key=key or p.key("x"), context=APP, member_id=member_id,
        exchange_id=exchange_id, reward_id=reward_id,
    )  # fmt: skip


def test_an_exchange_spends_points_grants_the_gift_and_a_retry_is_answered_once(program: Program) -> None:
    enroll(program, "m1")
    credit(program, "m1", 4_000)
    request = exchange_request(program, "m1", "X1", "nursing_pillow", key="xk-1")
    first = program.server.ledger.ExchangePoints(request)
    assert (first.points, first.cash_fen, first.replayed) == (3_000, 0, False)
    assert sum(d.points for d in first.debited) == 3_000
    assert (
        first.entitlement.kind == "gift"
        and first.entitlement.status == member_pb2.ENTITLEMENT_STATUS_AVAILABLE
    )
    assert dt(first.entitlement.valid_until) == START + timedelta(days=90)
    assert first.balance_after.available == 1_000
    again = program.server.ledger.ExchangePoints(request)
    assert again.replayed and again.entitlement.entitlement_id == first.entitlement.entitlement_id
    assert again.balance_after.available == 1_000
    code, info, _ = failure(
        program.server.ledger.ExchangePoints, exchange_request(program, "m1", "X2", "nursing_pillow")
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info is not None
    assert info.reason == "EXCHANGE_LIMIT_REACHED" and info.metadata["period"] == "YEAR"


def test_refusals_carry_their_reason_codes(program: Program) -> None:
    enroll(program, "m1")
    credit(program, "m1", 600)
    cases = {
        "INSUFFICIENT_POINTS": "nursing_pillow",
        "TIER_NOT_ELIGIBLE": "home_delivery",
        "OUTSIDE_SALE_WINDOW": "gift_box_618",
    }
    for reason, reward in cases.items():
        code, info, _ = failure(
            program.server.ledger.ExchangePoints, exchange_request(program, "m1", "X", reward)
        )
        assert (code, info.reason if info else None) == (grpc.StatusCode.FAILED_PRECONDITION, reason)
    code, _, bad = failure(
        program.server.ledger.ExchangePoints, exchange_request(program, "m1", "X", "caviar")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert [v.field for v in bad.field_violations] == ["reward_id"]


def test_the_client_exchanges_and_cancels_back_into_the_lots(program: Program) -> None:
    with LoyaltyClient(program.server.target, program.program_id, api_key=program.server.api_key) as client:
        client.enroll("m1")
        client.adjust_points("m1", 2_000, "GOODWILL", "op-1", "opening")
        exchanged = client.exchange_points("m1", "X1", "coupon_20")
        assert exchanged.balance_after.available == 500 and exchanged.entitlement.value_fen == 2_000
        cancelled = client.cancel_exchange("m1", "X1", "changed mind")
        assert cancelled.points_returned == 1_500 and cancelled.relot_lot_id == ""
        assert [(r.lot_id, r.points) for r in cancelled.returned] == [
            (d.lot_id, d.points) for d in exchanged.debited
        ]
        assert cancelled.balance_after.available == 2_000
        with pytest.raises(LedgerRefusal) as caught:
            client.cancel_exchange("m1", "X1", "again")
        assert caught.value.reason == "EXCHANGE_ALREADY_CANCELLED"
        assert client.adjust_stock("nursing_pillow", 10, "delivery", "op-1").stock_left == 210
        offers = {r.reward_id: r for r in client.list_rewards("m1")}
        assert offers["nursing_pillow"].stock_left == 210 and offers["coupon_20"].allowed
        [record] = client.list_exchanges("m1")
        assert (
            record.exchange_id == "X1"
            and record.cancel_reason == "changed mind"
            and record.HasField("cancelled_at")
        )
    listed = program.server.query.ListEntitlements(
        query_pb2.ListEntitlementsRequest(program_id=program.program_id, member_id="m1", page_size=50)
    )
    [coupon] = [e for e in listed.entitlements if e.entitlement_id == exchanged.entitlement.entitlement_id]
    assert coupon.status == member_pb2.ENTITLEMENT_STATUS_REVOKED


def test_the_catalog_shows_stock_left_and_what_a_member_may_exchange_and_their_exchanges(
    program: Program,
) -> None:
    enroll(program, "m1")
    credit(program, "m1", 3_500)
    query = program.server.query
    before = {
        r.reward_id: r
        for r in query.ListRewards(query_pb2.ListRewardsRequest(program_id=program.program_id)).rewards
    }
    assert set(before) == {"nursing_pillow", "coupon_20", "home_delivery", "formula_coupon", "gift_box_618"}
    assert (before["nursing_pillow"].stock_left, before["coupon_20"].stock_left) == (200, -1)
    program.server.ledger.ExchangePoints(exchange_request(program, "m1", "X1", "nursing_pillow"))
    offers = {
        r.reward_id: r
        for r in query.ListRewards(
            query_pb2.ListRewardsRequest(program_id=program.program_id, member_id="m1")
        ).rewards
    }
    assert offers["nursing_pillow"].stock_left == 199
    assert offers["nursing_pillow"].refusal_reason == "EXCHANGE_LIMIT_REACHED"
    assert offers["home_delivery"].refusal_reason == "TIER_NOT_ELIGIBLE"
    assert offers["gift_box_618"].refusal_reason == "OUTSIDE_SALE_WINDOW"
    assert offers["coupon_20"].refusal_reason == "INSUFFICIENT_POINTS"  # 500 left
    assert offers["coupon_20"].allowed is False
    assert (offers["formula_coupon"].allowed, offers["formula_coupon"].refusal_reason) == (
        False,
        "INSUFFICIENT_POINTS",
    )
    credit(program, "m1", 300)
    offers = {
        r.reward_id: r
        for r in query.ListRewards(
            query_pb2.ListRewardsRequest(program_id=program.program_id, member_id="m1")
        ).rewards
    }
    assert (offers["formula_coupon"].allowed, offers["formula_coupon"].refusal_reason) == (True, "")
    assert (offers["formula_coupon"].limit_count, offers["formula_coupon"].limit_period) == (1, "month")
    [record] = query.ListExchanges(
        query_pb2.ListExchangesRequest(program_id=program.program_id, member_id="m1")
    ).exchanges
    assert (record.exchange_id, record.reward_id, record.points) == ("X1", "nursing_pillow", 3_000)
    assert record.entitlement.kind == "gift" and not record.HasField("cancelled_at")


def test_an_operator_adjusts_stock_and_the_catalog_shows_it(program: Program) -> None:
    request = ledger_pb2.AdjustStockRequest(
        program_id=program.program_id, idempotency_key=program.key("stock"), context=CONSOLE,
        reward_id="gift_box_618", units=-20, reason="20 boxes sent to another store",
    )  # fmt: skip
    first = program.server.ledger.AdjustStock(request)
    assert (first.stock_left, first.replayed, first.stock_version) == (30, False, 1)
    again = program.server.ledger.AdjustStock(request)
    assert (again.stock_left, again.replayed) == (30, True)
    listed = program.server.query.ListRewards(query_pb2.ListRewardsRequest(program_id=program.program_id))
    assert {r.reward_id: r.stock_left for r in listed.rewards}["gift_box_618"] == 30
    request.idempotency_key, request.units = program.key("stock"), -31
    code, info, _ = failure(program.server.ledger.AdjustStock, request)
    assert (code, info.reason if info else None) == (grpc.StatusCode.FAILED_PRECONDITION, "STOCK_BELOW_ZERO")
    request.idempotency_key, request.context.operator_id = program.key("stock"), ""
    code, _, bad = failure(program.server.ledger.AdjustStock, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert "context.operator_id" in [v.field for v in bad.field_violations]


def test_verify_program_verifies_the_stock_streams(program: Program) -> None:
    from loyalty.v1 import audit_pb2

    enroll(program, "m1")
    credit(program, "m1", 3_000)
    program.server.ledger.ExchangePoints(exchange_request(program, "m1", "X1", "nursing_pillow"))
    responses = list(
        program.server.audit.VerifyProgram(audit_pb2.VerifyProgramRequest(program_id=program.program_id))
    )
    summary = responses[-1].summary
    assert summary.ok
    assert [(s.stream_id, s.ok, s.events_checked) for s in summary.stocks] == [
        (f"stock-{program.program_id}-nursing_pillow", True, 1)
    ]


def test_a_mall_write_names_the_field_it_cannot_take(program: Program) -> None:
    enroll(program, "m1")
    request = exchange_request(program, "m1", "", "nursing_pillow")
    code, _, bad = failure(program.server.ledger.ExchangePoints, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert [v.field for v in bad.field_violations] == ["exchange_id"]
    cancel = ledger_pb2.CancelExchangeRequest(
        program_id=program.program_id,
        idempotency_key=program.key("c"),
        context=APP,
        member_id="m1",
        exchange_id="X1",
    )
    code, _, bad = failure(program.server.ledger.CancelExchange, cancel)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and bad is not None
    assert [v.field for v in bad.field_violations] == ["reason"]
    cancel.reason = "changed mind"
    code, info, _ = failure(program.server.ledger.CancelExchange, cancel)
    assert (code, info.reason if info else None) == (grpc.StatusCode.NOT_FOUND, "EXCHANGE_NOT_FOUND")
