"""What auditors and the finance team ask, over gRPC: a member as of a date as known at a date, the liability."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from loyalty.v1 import audit_pb2, common_pb2, ledger_pb2, query_pb2
from tests.e2e.conftest import START, Program, ts
from tests.e2e.test_api import credit, enroll, failure, hold

pytestmark = pytest.mark.e2e


def sale(p: Program, member_id: str, order_id: str, paid_fen: int, at: object = None) -> None:
    context = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1")
    if at is not None:
        context.occurred_at.CopyFrom(ts(at))  # type: ignore[arg-type]
    p.server.ledger.RecordPurchase(
        ledger_pb2.RecordPurchaseRequest(
            program_id=p.program_id, idempotency_key=p.key("buy"), context=context, member_id=member_id,
            order_id=order_id,
            lines=[ledger_pb2.OrderLine(line_id="1", sku="SKU-1", category="toys", quantity=1, paid_fen=paid_fen)],
        )
    )  # fmt: skip


def test_a_late_sale_changes_the_past_as_known_today_but_not_as_known_before(program: Program) -> None:
    p = program
    enroll(p, "m-asof")
    sale(p, "m-asof", "O-1", 100_00)  # 10 March
    p.advance(START + timedelta(days=4))
    sale(p, "m-asof", "O-2", 50_00, START + timedelta(days=1))  # recorded on 14 March for a sale on 11 March
    q = p.server.query
    day_2 = ts(START + timedelta(days=2))

    def pending(**times: object) -> int:
        request = query_pb2.GetBalanceRequest(program_id=p.program_id, member_id="m-asof", **times)  # type: ignore[arg-type]
        return q.GetBalance(request).balance.pending

    assert pending() == 150
    assert pending(as_of=day_2) == 150  # as of 12 March, as known today
    assert pending(as_of=day_2, as_known_at=ts(START + timedelta(days=3))) == 100  # ... as known on 13 March
    assert pending(as_of=ts(START - timedelta(seconds=1) + timedelta(days=1))) == 100
    lots = q.ListLots(query_pb2.ListLotsRequest(program_id=p.program_id, member_id="m-asof", as_of=day_2,
                                                as_known_at=ts(START + timedelta(days=3)))).lots  # fmt: skip
    assert [lot.lot_id for lot in lots] == ["P-O-1"]
    tier = q.GetTierState(query_pb2.GetTierStateRequest(program_id=p.program_id, member_id="m-asof", as_of=day_2))
    assert tier.tier_state.member_id == "m-asof"
    code, _, bad = failure(
        q.GetBalance,
        query_pb2.GetBalanceRequest(program_id=p.program_id, member_id="m-asof", as_of=ts(START + timedelta(days=5))),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and bad.field_violations[0].field == "as_of"


def test_the_liability_in_money_reconciles_over_a_period(program: Program) -> None:
    p = program
    enroll(p, "m-liab")
    credit(p, "m-liab", 1_000)
    sale(p, "m-liab", "O-1", 300_00)
    p.advance(START + timedelta(days=8))
    p.server.ledger.HoldPoints(hold(p, "m-liab", "H-1", 200))
    p.server.ledger.CommitHold(ledger_pb2.CommitHoldRequest(
        program_id=p.program_id, idempotency_key=p.key("commit"), member_id="m-liab", hold_id="H-1"))  # fmt: skip
    p.server.ledger.HoldPoints(hold(p, "m-liab", "H-2", 100))
    audit = p.server.audit
    since = ts(START + timedelta(days=1))
    answer = audit.GetLiability(audit_pb2.GetLiabilityRequest(program_id=p.program_id, since=since))
    assert answer.point_value_fen == 1
    assert (answer.pending.points, answer.active.points, answer.held.points) == (0, 1_000, 100)
    assert answer.total.points == 1_100 and answer.total.value_fen == 1_100
    assert sum(m.outstanding.points for m in answer.by_expiry_month) == 1_100
    assert answer.breakage_ratio == "0/1" and answer.breakage_basis_points == 0
    m = answer.movements
    assert m.opening.points == 1_300 and m.redeemed.points == 200 and m.closing.points == 1_100
    earlier = audit.GetLiability(audit_pb2.GetLiabilityRequest(program_id=p.program_id, as_of=since))
    assert (earlier.pending.points, earlier.active.points) == (300, 1_000)
    code, _, bad = failure(
        audit.GetLiability,
        audit_pb2.GetLiabilityRequest(program_id=p.program_id, as_of=since, since=ts(START + timedelta(days=2))),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad is not None and bad.field_violations[0].field == "since"
