"""Little Sprout's programme rules end to end: behaviours, tiers, paid membership, member day, late sales,
merges and expiry, each checked to the point through the real gRPC server on a test clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import common_pb2, ledger_pb2, member_pb2, query_pb2
from tests.e2e.conftest import CST, START, Program, dt, ts

pytestmark = pytest.mark.e2e

POS = common_pb2.RequestContext(channel=common_pb2.CHANNEL_POS, store_id="S-1", terminal_id="T-1")
CONSOLE = common_pb2.RequestContext(channel=common_pb2.CHANNEL_OPERATOR_CONSOLE, operator_id="op-1")


# -- helpers -----------------------------------------------------------------------------------------------


def refusal(call: Callable[[Any], Any], request: Any) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    """Call an rpc that must fail; return its code and its ErrorInfo (which must be present)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    err = caught.value
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no status details on {err}"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "loyalty.v1"
            return err.code(), info
    raise AssertionError(f"no ErrorInfo in {status}")


def when(value: str) -> datetime:
    """An RFC 3339 metadata value as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def enroll(p: Program, member_id: str) -> None:
    p.server.ledger.EnrollMember(
        ledger_pb2.EnrollMemberRequest(program_id=p.program_id, idempotency_key=p.key("enroll"), member_id=member_id)
    )


def sale(
    p: Program, member_id: str, order_id: str, paid_fen: int, occurred_at: datetime | None = None
) -> ledger_pb2.RecordPurchaseRequest:
    """A one-line sale of a full-rate category (1 point per CNY before the multiplier)."""
    context = common_pb2.RequestContext()
    context.CopyFrom(POS)
    if occurred_at is not None:
        context.occurred_at.CopyFrom(ts(occurred_at))
    return ledger_pb2.RecordPurchaseRequest(
        program_id=p.program_id,
        idempotency_key=p.key("buy"),
        context=context,
        member_id=member_id,
        order_id=order_id,
        lines=[ledger_pb2.OrderLine(line_id="1", sku="LS-DIAPER-M", category="diapers", quantity=1, paid_fen=paid_fen)],
    )


def buy(p: Program, member_id: str, order_id: str, paid_fen: int) -> ledger_pb2.RecordPurchaseResponse:
    return p.server.ledger.RecordPurchase(sale(p, member_id, order_id, paid_fen))


def award(p: Program, member_id: str, behaviour: str, reference: str = "") -> ledger_pb2.AwardPointsRequest:
    return ledger_pb2.AwardPointsRequest(
        program_id=p.program_id,
        idempotency_key=p.key("award"),
        context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_MINI_PROGRAM),
        member_id=member_id,
        behaviour=behaviour,
        reference=reference,
    )


def credit(p: Program, member_id: str, points: int) -> ledger_pb2.AdjustPointsRequest:
    return ledger_pb2.AdjustPointsRequest(
        program_id=p.program_id,
        idempotency_key=p.key("adjust"),
        context=CONSOLE,
        member_id=member_id,
        points=points,
        reason_code="GOODWILL",
        note="test credit",
    )


def balance(p: Program, member_id: str) -> member_pb2.Balance:
    return p.server.query.GetBalance(query_pb2.GetBalanceRequest(program_id=p.program_id, member_id=member_id)).balance


def tier_state(p: Program, member_id: str) -> member_pb2.TierState:
    return p.server.query.GetTierState(
        query_pb2.GetTierStateRequest(program_id=p.program_id, member_id=member_id)
    ).tier_state


def entitlements(p: Program, member_id: str) -> dict[str, list[member_pb2.Entitlement]]:
    listed = p.server.query.ListEntitlements(
        query_pb2.ListEntitlementsRequest(program_id=p.program_id, member_id=member_id, page_size=500)
    )
    out: dict[str, list[member_pb2.Entitlement]] = {}
    for ent in listed.entitlements:
        out.setdefault(ent.benefit_code, []).append(ent)
    return out


def buy_membership(p: Program, member_id: str, membership_id: str) -> ledger_pb2.PurchaseMembershipResponse:
    return p.server.ledger.PurchaseMembership(
        ledger_pb2.PurchaseMembershipRequest(
            program_id=p.program_id,
            idempotency_key=p.key("membership"),
            context=POS,
            member_id=member_id,
            plan_code="black_gold",
            membership_id=membership_id,
            paid_fen=19_900,
            order_id=f"MB-{membership_id}",
        )
    )


def cancel_membership(p: Program, member_id: str, membership_id: str) -> ledger_pb2.CancelMembershipRequest:
    return ledger_pb2.CancelMembershipRequest(
        program_id=p.program_id,
        idempotency_key=p.key("cancel"),
        context=POS,
        member_id=member_id,
        membership_id=membership_id,
        reason="changed my mind",
    )


def consume(p: Program, member_id: str, entitlement_id: str) -> ledger_pb2.ConsumeEntitlementRequest:
    return ledger_pb2.ConsumeEntitlementRequest(
        program_id=p.program_id,
        idempotency_key=p.key("consume"),
        context=common_pb2.RequestContext(channel=common_pb2.CHANNEL_APP),
        member_id=member_id,
        entitlement_id=entitlement_id,
        order_id=f"USE-{p.key('order')}",
        quantity=1,
    )


# -- 1. behaviours -----------------------------------------------------------------------------------------


def test_check_in_once_a_day_active_at_once_and_adds_growth(program: Program) -> None:
    enroll(program, "m-1")
    first = program.server.ledger.AwardPoints(award(program, "m-1", "check_in"))
    assert (first.points, first.growth, first.cap_group) == (1, 1, "check_in")
    assert first.lot_id
    bal = balance(program, "m-1")
    assert (bal.active, bal.pending, bal.available) == (1, 0, 1)

    code, info = refusal(program.server.ledger.AwardPoints, award(program, "m-1", "check_in"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "BEHAVIOUR_CAP_REACHED"
    assert info.metadata["cap_group"] == "check_in"
    assert info.metadata["period"].upper() == "DAY"
    assert (info.metadata["limit"], info.metadata["used"]) == ("1", "1")
    assert balance(program, "m-1").active == 1  # the refusal wrote nothing

    # 23:30 local is still the same day in Asia/Shanghai (but already the next day in UTC terms is 15:30).
    program.advance(datetime(2026, 3, 10, 23, 30, tzinfo=CST))
    code, info = refusal(program.server.ledger.AwardPoints, award(program, "m-1", "check_in"))
    assert info.reason == "BEHAVIOUR_CAP_REACHED"

    program.advance(datetime(2026, 3, 11, 0, 30, tzinfo=CST))
    second = program.server.ledger.AwardPoints(award(program, "m-1", "check_in"))
    assert (second.points, second.growth) == (1, 1)
    bal = balance(program, "m-1")
    assert (bal.active, bal.pending, bal.available, bal.lifetime_earned) == (2, 0, 2, 2)
    assert tier_state(program, "m-1").growth_in_window == 2


# -- 2. tier upgrades --------------------------------------------------------------------------------------


def test_growth_of_two_thousand_upgrades_to_silver_and_silver_earns_x1_2(program: Program) -> None:
    enroll(program, "m-1")
    first = buy(program, "m-1", "T-1", 150_000)  # 1,500 CNY
    assert (first.points_earned, first.growth_earned, first.tier_after) == (1500, 1500, "regular")
    assert tier_state(program, "m-1").tier == "regular"
    assert tier_state(program, "m-1").next.growth_needed == 500

    crossing = buy(program, "m-1", "T-2", 50_000)  # 500 CNY: growth 2,000 exactly
    assert crossing.tier_at_sale == "regular"
    assert crossing.points_earned == 500  # judged at the tier before the sale, x1.0
    assert crossing.tier_after == "silver"
    state = tier_state(program, "m-1")
    assert (state.tier, state.earned_tier, state.growth_in_window) == ("silver", "silver", 2000)
    assert dt(state.since) == START

    silver = buy(program, "m-1", "T-3", 123_456)  # 1,234.56 CNY at x1.2 -> floor(1481.472) = 1481
    assert silver.tier_at_sale == "silver"
    assert Fraction(silver.applied_multiplier) == Fraction(6, 5)
    assert "tier" in silver.applied_multiplier_rule
    assert silver.points_earned == 1481
    assert silver.growth_earned == 1234
    assert balance(program, "m-1").pending == 1500 + 500 + 1481


def test_single_sale_crossing_five_thousand_jumps_from_regular_to_gold(program: Program) -> None:
    enroll(program, "m-1")
    jump = buy(program, "m-1", "G-1", 500_000)  # 5,000 CNY
    assert jump.tier_at_sale == "regular"
    assert jump.points_earned == 5000
    assert jump.tier_after == "gold"
    state = tier_state(program, "m-1")
    assert (state.tier, state.earned_tier, state.growth_in_window) == ("gold", "gold", 5000)
    gold = buy(program, "m-1", "G-2", 10_000)  # 100 CNY at x1.5
    assert Fraction(gold.applied_multiplier) == Fraction(3, 2)
    assert gold.points_earned == 150


# -- 3. review and downgrade -------------------------------------------------------------------------------


def test_review_drops_silver_one_tier_only_after_thirty_days_grace(program: Program) -> None:
    enroll(program, "m-1")
    buy(program, "m-1", "R-1", 150_000)
    upgraded_at = START + timedelta(days=1)
    program.advance(upgraded_at)
    assert buy(program, "m-1", "R-2", 60_000).tier_after == "silver"
    state = tier_state(program, "m-1")
    assert dt(state.since) == upgraded_at
    review_at = datetime(2027, 3, 11, 10, 0, tzinfo=CST)  # anniversary of the tier change
    assert dt(state.next_review_at) == review_at

    program.advance(review_at + timedelta(hours=1))
    state = tier_state(program, "m-1")
    assert state.tier == "silver"  # the review only issues a notice
    assert state.HasField("downgrade_notice")
    assert state.downgrade_notice.to_tier == "regular"
    assert dt(state.downgrade_notice.downgrade_at) == review_at + timedelta(days=30)

    program.advance(review_at + timedelta(days=30) - timedelta(hours=1))
    assert tier_state(program, "m-1").tier == "silver"  # grace not over yet

    advanced = program.advance(review_at + timedelta(days=30, hours=1))
    assert advanced.downgrades == 1
    state = tier_state(program, "m-1")
    assert (state.tier, state.earned_tier) == ("regular", "regular")
    assert not state.HasField("downgrade_notice")


# -- 4. temporary upgrade ----------------------------------------------------------------------------------


def test_temporary_upgrade_shows_and_ends_by_itself(program: Program) -> None:
    enroll(program, "m-1")
    ends_at = START + timedelta(days=7)
    granted = program.server.ledger.OverrideTier(
        ledger_pb2.OverrideTierRequest(
            program_id=program.program_id,
            idempotency_key=program.key("override"),
            context=CONSOLE,
            member_id="m-1",
            tier="gold",
            kind=member_pb2.TIER_OVERRIDE_KIND_TEMPORARY_UPGRADE,
            ends_at=ts(ends_at),
            reason="invited three friends",
        )
    )
    assert (granted.tier, granted.earned_tier) == ("gold", "regular")
    state = tier_state(program, "m-1")
    assert (state.tier, state.earned_tier) == ("gold", "regular")
    assert state.override.kind == member_pb2.TIER_OVERRIDE_KIND_TEMPORARY_UPGRADE
    assert state.override.tier == "gold"
    assert state.override.operator_id == "op-1"
    assert dt(state.override.ends_at) == ends_at

    program.advance(ends_at - timedelta(minutes=1))
    assert tier_state(program, "m-1").tier == "gold"

    program.advance(ends_at + timedelta(minutes=1))
    state = tier_state(program, "m-1")
    assert (state.tier, state.earned_tier) == ("regular", "regular")
    assert not state.HasField("override")


# -- 5. paid membership ------------------------------------------------------------------------------------


def test_black_gold_card_term_benefits_quota_and_cooling_off(program: Program) -> None:
    for member in ("m-a", "m-b", "m-c"):
        enroll(program, member)
    bought = buy_membership(program, "m-a", "BG-A")
    assert bought.membership.paid_fen == 19_900
    state = tier_state(program, "m-a")
    assert len(state.paid_memberships) == 1
    term = state.paid_memberships[0]
    assert (term.membership_id, term.plan_code, term.status) == ("BG-A", "black_gold", member_pb2.PAID_MEMBERSHIP_STATUS_ACTIVE)
    assert dt(term.term_start) == START
    assert dt(term.term_end) == datetime(2027, 3, 10, 10, 0, tzinfo=CST)
    assert dt(term.cooling_off_ends_at) == START + timedelta(days=7)

    ents = entitlements(program, "m-a")
    [consult] = ents["parenting_consultations"]
    assert (consult.quota_total, consult.quota_per_month, consult.used_total, consult.used_this_month) == (12, 3, 0, 0)
    assert consult.status == member_pb2.ENTITLEMENT_STATUS_AVAILABLE
    [delivery] = ents["free_delivery"]
    assert delivery.status == member_pb2.ENTITLEMENT_STATUS_AVAILABLE
    assert dt(delivery.valid_until) == datetime(2027, 3, 10, 10, 0, tzinfo=CST)
    [sessions] = ents["early_education_sessions"]
    assert sessions.quota_total == 4

    for used in (1, 2, 3):
        done = program.server.ledger.ConsumeEntitlement(consume(program, "m-a", consult.entitlement_id))
        assert (done.remaining_this_period, done.remaining_total) == (3 - used, 12 - used)
    code, info = refusal(program.server.ledger.ConsumeEntitlement, consume(program, "m-a", consult.entitlement_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "QUOTA_EXHAUSTED"
    assert info.metadata["period"].upper() == "MONTH"
    assert (info.metadata["limit"], info.metadata["used"], info.metadata["requested"]) == ("3", "3", "1")
    assert when(info.metadata["resets_at"]) == datetime(2026, 4, 1, tzinfo=CST)
    [consult] = entitlements(program, "m-a")["parenting_consultations"]
    assert (consult.used_total, consult.used_this_month) == (3, 3)

    # Cancelled within the 7-day cooling-off: full refund, unused benefits revoked.
    buy_membership(program, "m-b", "BG-B")
    buy_membership(program, "m-c", "BG-C")
    program.advance(START + timedelta(days=3))
    cancelled = program.server.ledger.CancelMembership(cancel_membership(program, "m-b", "BG-B"))
    assert cancelled.refund_fen == 19_900
    assert cancelled.membership.status == member_pb2.PAID_MEMBERSHIP_STATUS_CANCELLED
    revoked = {e.benefit_code for e in cancelled.revoked}
    assert {"free_delivery", "parenting_consultations", "early_education_sessions"} <= revoked
    b_ents = entitlements(program, "m-b")
    for code_name in ("free_delivery", "parenting_consultations", "early_education_sessions"):
        assert [e.status for e in b_ents[code_name]] == [member_pb2.ENTITLEMENT_STATUS_REVOKED], code_name
    code, info = refusal(
        program.server.ledger.ConsumeEntitlement,
        consume(program, "m-b", b_ents["parenting_consultations"][0].entitlement_id),
    )
    assert info.reason == "ENTITLEMENT_REVOKED"
    assert tier_state(program, "m-b").paid_memberships[0].status == member_pb2.PAID_MEMBERSHIP_STATUS_CANCELLED

    # Bought at START, cancelled after 8 days: too late.
    program.advance(START + timedelta(days=8))
    code, info = refusal(program.server.ledger.CancelMembership, cancel_membership(program, "m-c", "BG-C"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "COOLING_OFF_ENDED"
    assert when(info.metadata["cooling_off_ended_at"]) == START + timedelta(days=7)
    assert tier_state(program, "m-c").paid_memberships[0].status == member_pb2.PAID_MEMBERSHIP_STATUS_ACTIVE


# -- 6. member day -----------------------------------------------------------------------------------------


def test_member_day_doubles_points_on_the_local_fifteenth_and_grants_the_coupon(program: Program) -> None:
    enroll(program, "m-1")
    program.advance(datetime(2026, 3, 14, 23, 30, tzinfo=CST))  # 2026-03-14 15:30 UTC
    eve = buy(program, "m-1", "MD-0", 10_000)
    assert eve.points_earned == 100
    assert Fraction(eve.applied_multiplier) == 1
    assert "member_day_coupon" not in entitlements(program, "m-1")

    advanced = program.advance(datetime(2026, 3, 15, 0, 30, tzinfo=CST))  # still the 14th in UTC
    assert advanced.grants >= 1
    day = buy(program, "m-1", "MD-1", 12_345)  # 123.45 CNY x2 -> floor(246.9) = 246
    assert Fraction(day.applied_multiplier) == 2
    assert day.applied_multiplier_rule == "member_day"
    assert day.points_earned == 246
    assert day.growth_earned == 123  # growth is never multiplied

    [coupon] = entitlements(program, "m-1")["member_day_coupon"]
    assert coupon.status == member_pb2.ENTITLEMENT_STATUS_AVAILABLE
    assert dt(coupon.valid_from) == datetime(2026, 3, 15, tzinfo=CST)
    assert dt(coupon.valid_until) == datetime(2026, 3, 16, tzinfo=CST)

    program.advance(datetime(2026, 3, 16, 0, 30, tzinfo=CST))
    after = buy(program, "m-1", "MD-2", 10_000)
    assert after.points_earned == 100


# -- 7. late offline sales ---------------------------------------------------------------------------------


def test_late_offline_sale_earns_already_active_and_too_late_is_refused(program: Program) -> None:
    enroll(program, "m-1")
    now = START + timedelta(days=15)
    program.advance(now)
    # Business time 2026-03-15 10:00: a member day, so the late sale is judged x2 as of that day.
    late = program.server.ledger.RecordPurchase(sale(program, "m-1", "OFF-1", 20_000, occurred_at=now - timedelta(days=10)))
    assert late.applied_multiplier_rule == "member_day"
    assert late.points_earned == 400
    assert late.growth_earned == 200
    assert dt(late.active_at) == now - timedelta(days=3)
    assert dt(late.expires_at) == datetime(2027, 4, 1, tzinfo=CST)
    bal = balance(program, "m-1")
    assert (bal.active, bal.pending, bal.available) == (400, 0, 400)
    lots = program.server.query.ListLots(query_pb2.ListLotsRequest(program_id=program.program_id, member_id="m-1"))
    assert [(lot.lot_id, lot.status, lot.remaining) for lot in lots.lots] == [
        (late.lot_id, member_pb2.LOT_STATUS_ACTIVE, 400)
    ]
    assert dt(lots.lots[0].occurred_at) == now - timedelta(days=10)

    later = START + timedelta(days=40)
    program.advance(later)
    code, info = refusal(
        program.server.ledger.RecordPurchase, sale(program, "m-1", "OFF-2", 20_000, occurred_at=later - timedelta(days=31))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "OUTSIDE_OFFLINE_WINDOW"
    assert info.metadata["window_days"] == "30"
    assert when(info.metadata["earliest_allowed"]) == later - timedelta(days=30)
    assert when(info.metadata["occurred_at"]) == later - timedelta(days=31)
    assert balance(program, "m-1").lifetime_earned == 400


# -- 8. merges ---------------------------------------------------------------------------------------------


def test_merge_moves_points_and_closes_the_source(program: Program) -> None:
    enroll(program, "m-keep")
    enroll(program, "m-dup")
    buy(program, "m-keep", "MK-1", 5_000)  # 50 pending, growth 50
    program.server.ledger.AdjustPoints(credit(program, "m-dup", 300))  # 300 active
    buy(program, "m-dup", "MD-1", 10_000)  # 100 pending, growth 100

    merged = program.server.ledger.MergeMembers(
        ledger_pb2.MergeMembersRequest(
            program_id=program.program_id,
            idempotency_key=program.key("merge"),
            context=CONSOLE,
            member_id="m-keep",
            source_member_id="m-dup",
            reason="same phone, ticket T-1",
        )
    )
    assert merged.points_moved == 400
    assert merged.lots_moved == 2
    assert merged.growth_moved == 100
    keep = balance(program, "m-keep")
    assert (keep.active, keep.pending, keep.available) == (300, 150, 300)
    assert tier_state(program, "m-keep").growth_in_window == 150
    dup = balance(program, "m-dup")
    assert (dup.active, dup.pending) == (0, 0)

    for request, call in (
        (credit(program, "m-dup", 10), program.server.ledger.AdjustPoints),
        (sale(program, "m-dup", "MD-2", 10_000), program.server.ledger.RecordPurchase),
        (award(program, "m-dup", "check_in"), program.server.ledger.AwardPoints),
    ):
        code, info = refusal(call, request)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert info.reason == "MEMBER_MERGED"
        assert info.metadata["merged_into"] == "m-keep"

    program.advance(START + timedelta(days=7))
    keep = balance(program, "m-keep")
    assert (keep.active, keep.pending) == (450, 0)


# -- 9. expiry ---------------------------------------------------------------------------------------------


def test_points_earned_in_march_2026_expire_at_the_end_of_march_2027_local(program: Program) -> None:
    enroll(program, "m-1")
    bought = buy(program, "m-1", "E-1", 10_000)  # 100 points, active 2026-03-17
    adjusted = program.server.ledger.AdjustPoints(credit(program, "m-1", 25))  # active at once
    end_of_march_2027 = datetime(2027, 4, 1, tzinfo=CST)
    assert dt(bought.expires_at) == end_of_march_2027
    assert dt(adjusted.expires_at) == end_of_march_2027
    program.advance(datetime(2026, 4, 2, 10, 0, tzinfo=CST))
    check_in = program.server.ledger.AwardPoints(award(program, "m-1", "check_in"))
    assert dt(check_in.expires_at) == datetime(2027, 5, 1, tzinfo=CST)

    program.advance(datetime(2027, 3, 31, 23, 0, tzinfo=CST))
    before = balance(program, "m-1")
    assert (before.active, before.lifetime_expired) == (126, 0)
    assert dt(before.next_expiry_at) == end_of_march_2027
    assert before.next_expiry_points == 125

    advanced = program.advance(datetime(2027, 4, 1, 0, 30, tzinfo=CST))  # still 2027-03-31 in UTC
    assert advanced.expiries == 2
    after = balance(program, "m-1")
    assert (after.active, after.available) == (1, 1)
    assert after.lifetime_expired - before.lifetime_expired == 125
    assert balance(program, "m-1").active == 1


# -- response and metadata details ---------------------------------------------------------------------------


def test_award_response_reports_cap_usage(program: Program) -> None:
    enroll(program, "m-1")
    first = program.server.ledger.AwardPoints(award(program, "m-1", "check_in"))
    day_caps = [c for c in first.caps if c.period == ledger_pb2.CAP_PERIOD_DAY]
    assert [(c.limit, c.used, c.remaining) for c in day_caps] == [(1, 1, 0)]
    assert dt(day_caps[0].resets_at) == datetime(2026, 3, 11, tzinfo=CST)


def test_behaviour_cap_refusal_metadata_is_complete(program: Program) -> None:
    enroll(program, "m-1")
    program.server.ledger.AwardPoints(award(program, "m-1", "check_in"))
    _, info = refusal(program.server.ledger.AwardPoints, award(program, "m-1", "check_in"))
    assert info.reason == "BEHAVIOUR_CAP_REACHED"
    assert info.metadata.get("behaviour") == "check_in"
    assert info.metadata.get("period") == "DAY"
    assert when(info.metadata.get("resets_at", "1970-01-01T00:00:00Z")) == datetime(2026, 3, 11, tzinfo=CST)


def test_advance_clock_counts_the_ended_override(program: Program) -> None:
    enroll(program, "m-1")
    ends_at = START + timedelta(days=7)
    program.server.ledger.OverrideTier(
        ledger_pb2.OverrideTierRequest(
            program_id=program.program_id,
            idempotency_key=program.key("override"),
            context=CONSOLE,
            member_id="m-1",
            tier="gold",
            kind=member_pb2.TIER_OVERRIDE_KIND_TEMPORARY_UPGRADE,
            ends_at=ts(ends_at),
            reason="invited three friends",
        )
    )
    advanced = program.advance(ends_at + timedelta(minutes=1))
    assert tier_state(program, "m-1").tier == "regular"
    assert advanced.overrides_ended == 1


def test_plan_entitlement_names_its_membership(program: Program) -> None:
    enroll(program, "m-a")
    buy_membership(program, "m-a", "BG-A")
    ents = entitlements(program, "m-a")
    assert {e.membership_id for code in ("parenting_consultations", "free_delivery") for e in ents[code]} == {"BG-A"}


def test_member_merged_refusal_names_the_source(program: Program) -> None:
    enroll(program, "m-keep")
    enroll(program, "m-dup")
    program.server.ledger.MergeMembers(
        ledger_pb2.MergeMembersRequest(
            program_id=program.program_id,
            idempotency_key=program.key("merge"),
            context=CONSOLE,
            member_id="m-keep",
            source_member_id="m-dup",
            reason="same phone, ticket T-1",
        )
    )
    _, info = refusal(program.server.ledger.AdjustPoints, credit(program, "m-dup", 10))
    assert info.reason == "MEMBER_MERGED"
    assert info.metadata.get("member_id") == "m-dup"


def test_lifetime_earned_counts_positive_adjustments(program: Program) -> None:
    enroll(program, "m-1")
    buy(program, "m-1", "L-1", 10_000)
    program.server.ledger.AdjustPoints(credit(program, "m-1", 25))
    bal = balance(program, "m-1")
    assert (bal.active, bal.pending) == (25, 100)
    assert bal.lifetime_earned == 125


def test_membership_refusals_carry_the_documented_metadata(program: Program) -> None:
    enroll(program, "m-a")
    enroll(program, "m-c")
    buy_membership(program, "m-a", "BG-A")
    buy_membership(program, "m-c", "BG-C")
    [consult] = entitlements(program, "m-a")["parenting_consultations"]
    for _ in range(3):
        program.server.ledger.ConsumeEntitlement(consume(program, "m-a", consult.entitlement_id))
    _, quota = refusal(program.server.ledger.ConsumeEntitlement, consume(program, "m-a", consult.entitlement_id))
    program.advance(START + timedelta(days=8))
    _, cooling = refusal(program.server.ledger.CancelMembership, cancel_membership(program, "m-c", "BG-C"))
    assert (quota.metadata.get("entitlement_id"), quota.metadata.get("period")) == (consult.entitlement_id, "MONTH")
    assert cooling.metadata.get("membership_id") == "BG-C"
