"""Rules of refunds, each pinned with Little Sprout's exact numbers (docs/rules.md):

* take-back per line ``ceil(earned * refunded_so_far / paid) - taken_back_so_far``; growth the same way;
* take-back order: the sale's own lot (pending or active), then other active lots soonest-expiring first, then
  arrears (clawback ``arrears``) or nothing more (``cap_at_balance``); never another sale's pending lot;
* points that paid for the order come back ``floor(redeemed * refunded_so_far / paid_total) - returned_so_far``
  into the lots they came from, latest-expiring first, with those lots' expiry; a part whose lot expired comes
  back as a new lot expiring 30 days after the refund, which counts for that refund's take-back and repays
  arrears first like any lot that becomes active;
* never take twice: the same refund is refused, and no line is refunded beyond what it paid.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import Refusal
from policies import PolicyHistory, policy_from_data
from tests.unit.rules.member import POLICY, Member, line, sh


def pairs(debits: tuple[ev.LotDebit, ...]) -> list[tuple[str, int]]:
    return [(d.lot_id, d.points) for d in debits]


def lot_id(awarded: ev.PointsAwarded) -> str:
    assert awarded.lot is not None
    return awarded.lot.lot_id


# -- how much is taken back --------------------------------------------------------------------------------


def test_partial_refunds_take_back_the_ceiling_of_the_refunded_share_and_add_up_to_what_was_earned() -> None:
    m = Member(sh(2026, 3, 1))
    sale = m.buy("O1", line(9_999), now=sh(2026, 3, 2, 10))  # 99.99 CNY: 99 points, 99 growth
    assert (sale.points, sale.growth) == (99, 99)
    first = m.refund("O1", "F1", cmd.RefundLine("1", 5_000), now=sh(2026, 3, 3, 10))
    # ceil(99 * 5000 / 9999) = ceil(49.50) = 50, for points and for growth alike
    assert ([ln.points_taken for ln in first.lines], first.points_taken, first.growth_taken) == ([50], 50, 50)
    rest = m.refund("O1", "F2", cmd.RefundLine("1", 4_999), now=sh(2026, 3, 4, 10))
    # ceil(99 * 9999 / 9999) - 50 = 49: the two refunds take exactly what a full refund takes
    assert ([ln.points_taken for ln in rest.lines], rest.points_taken, rest.growth_taken) == ([49], 49, 49)
    assert (m.state.pending, m.state.active, m.state.arrears) == (0, 0, 0)
    assert m.state.growth_between(sh(2026, 1, 1), sh(2026, 12, 31)) == 0


def test_growth_taken_back_by_a_second_partial_refund_counts_everything_refunded_so_far() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(30_000, "a"), line(19_999, "b"), now=sh(2026, 3, 2, 10))  # 499 growth, 300 + 199 points
    m.refund("O1", "F1", cmd.RefundLine("a", 10_001), now=sh(2026, 3, 3, 10))
    second = m.refund("O1", "F2", cmd.RefundLine("b", 10_001), now=sh(2026, 3, 3, 11))
    # growth: ceil(499 * 20002 / 49999) = ceil(199.63) = 200, less ceil(499 * 10001 / 49999) = 100 already taken
    # points of line b: ceil(199 * 10001 / 19999) = ceil(99.51) = 100
    assert (second.growth_taken, second.points_taken) == (100, 100)
    assert m.state.growth_between(sh(2026, 1, 1), sh(2026, 12, 31)) == 499 - 200


# -- where it is taken from --------------------------------------------------------------------------------


def test_take_back_starts_with_the_sales_own_lot_while_it_is_still_pending() -> None:
    m = Member(sh(2026, 3, 1))
    workshop = lot_id(m.award("workshop", now=sh(2026, 3, 1, 10)))  # 100 active points
    m.buy("O1", line(10_000), now=sh(2026, 3, 2, 10))  # 100 points, pending until 03-09
    refunded = m.refund("O1", "F1", cmd.RefundLine("1", 4_000), now=sh(2026, 3, 3, 10))
    assert (refunded.points_taken, pairs(refunded.debits)) == (40, [("P-O1", 40)])
    assert m.remaining(workshop, "P-O1") == [100, 60]
    assert (m.state.active, m.state.pending) == (100, 60)


def test_take_back_starts_with_the_sales_own_active_lot_even_if_another_lot_expires_sooner() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 25, 10))  # active 04-01, expires at the end of April 2027
    workshop = lot_id(m.award("workshop", now=sh(2026, 3, 28, 10)))  # expires at the end of March 2027
    m.advance(sh(2026, 4, 2))
    refunded = m.refund("O1", "F1", cmd.RefundLine("1", 4_000))
    assert pairs(refunded.debits) == [("P-O1", 40)]
    assert m.remaining(workshop, "P-O1") == [100, 60]


def _spent_own_lot_and_other_lots(history: PolicyHistory | None = None) -> tuple[Member, dict[str, str]]:
    """O1 earned 200 points, 150 of them already spent; other lots: a late sale's 30 points expiring at the end of
    March 2027, a workshop's 100 and a check-in's 1 expiring at the end of April 2027, and O2's 50 still pending."""
    m = Member(sh(2026, 3, 1)) if history is None else Member(sh(2026, 3, 1), history=history)
    first = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))  # expires at the end of March 2027
    m.buy("O1", line(20_000), now=sh(2026, 3, 25, 10))  # 200, active 04-01 10:00, expires at the end of April 2027
    m.advance(sh(2026, 4, 1, 11))
    second = lot_id(m.award("workshop"))  # 100, expires at the end of April 2027, after O1 in business time
    spent = m.redeem("X1", 250, 1_000_000, now=sh(2026, 4, 1, 12))
    assert pairs(spent.debits) == [(first, 100), ("P-O1", 150)]
    check_in = lot_id(m.award("check_in", now=sh(2026, 4, 2, 10)))
    m.buy("O2", line(5_000), now=sh(2026, 4, 2, 11))  # 50 points pending until 04-09 11:00
    m.buy("O3", line(3_000), at=sh(2026, 3, 5, 10))  # synced late: active since 03-12, expires end of March 2027
    assert m.lot("P-O3").expires_at == sh(2027, 4, 1) < m.lot(second).expires_at == sh(2027, 5, 1)
    return m, {"workshop": second, "check_in": check_in}


def test_take_back_goes_on_to_other_active_lots_soonest_expiring_first_then_into_arrears() -> None:
    m, lots = _spent_own_lot_and_other_lots()
    refunded = m.refund("O1", "F1", now=sh(2026, 4, 2, 12))
    assert refunded.points_taken == 200
    assert pairs(refunded.debits) == [("P-O1", 50), ("P-O3", 30), (lots["workshop"], 100), (lots["check_in"], 1)]
    assert (refunded.arrears_added, refunded.forgiven, refunded.clawback) == (19, 0, "arrears")
    assert (m.state.active, m.state.arrears) == (0, 19)


def test_take_back_never_touches_another_sales_pending_lot() -> None:
    m, _ = _spent_own_lot_and_other_lots()
    refunded = m.refund("O1", "F1", now=sh(2026, 4, 2, 12))
    assert "P-O2" not in {d.lot_id for d in refunded.debits}
    assert (m.state.pending, m.remaining("P-O2")) == (50, [50])
    # the pending lot pays the arrears first when it becomes active
    m.advance(sh(2026, 4, 9, 11))
    activated = m.of_type(ev.LotActivated)[-1]
    assert (activated.lot_id, activated.arrears_repaid) == ("P-O2", 19)
    assert (m.state.arrears, m.state.active) == (0, 31)


def test_take_back_beyond_the_balance_is_forgiven_when_the_program_caps_at_the_balance() -> None:
    document = POLICY.model_dump(mode="json")
    document["refunds"]["clawback"] = "cap_at_balance"
    m, lots = _spent_own_lot_and_other_lots(PolicyHistory.starting_with(policy_from_data(document), sh(2020, 1, 1)))
    refunded = m.refund("O1", "F1", now=sh(2026, 4, 2, 12))
    assert pairs(refunded.debits) == [("P-O1", 50), ("P-O3", 30), (lots["workshop"], 100), (lots["check_in"], 1)]
    assert (refunded.arrears_added, refunded.forgiven, refunded.clawback) == (0, 19, "cap_at_balance")
    assert (m.state.active, m.state.arrears, m.state.pending) == (0, 0, 50)


def test_take_back_one_point_beyond_the_balance_puts_that_point_into_arrears() -> None:
    m = Member(sh(2026, 3, 1))
    m.award("workshop", now=sh(2026, 3, 2, 10))  # 100 points
    m.buy("O1", line(10_000), now=sh(2026, 3, 2, 11))  # 100 points, active 03-09
    m.advance(sh(2026, 3, 10))
    m.redeem("X1", 101, 1_000_000)  # 99 points left
    refunded = m.refund("O1", "F1")
    assert (refunded.points_taken, sum(d.points for d in refunded.debits)) == (100, 99)
    assert (refunded.arrears_added, refunded.forgiven) == (1, 0)
    assert (m.state.active, m.state.arrears) == (0, 1)


# -- the points that paid come back ------------------------------------------------------------------------


def _paid_150_points_of_o1() -> tuple[Member, str, str]:
    """O1: 100 CNY in money (earning 100 points) and 150 points, 100 from a lot expiring at the end of March
    2027 and 50 from one expiring at the end of April 2027."""
    m = Member(sh(2026, 3, 1))
    march = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))
    april = lot_id(m.award("workshop", now=sh(2026, 4, 2, 10)))
    committed = m.redeem("O1", 150, 10_150, now=sh(2026, 4, 2, 12))
    assert pairs(committed.debits) == [(march, 100), (april, 50)]
    m.buy("O1", line(10_000), points_paid=150)
    return m, march, april


def test_points_that_paid_come_back_into_their_own_lots_latest_expiring_first_in_proportion() -> None:
    m, march, april = _paid_150_points_of_o1()
    first = m.refund("O1", "F1", cmd.RefundLine("1", 3_000), now=sh(2026, 4, 3, 10))
    # floor(150 * 3000 / 10000) = 45, all into the lot expiring last
    assert (first.points_returned, pairs(first.returned), first.relot, first.points_taken) == (45, [(april, 45)], None, 30)
    second = m.refund("O1", "F2", cmd.RefundLine("1", 3_001))
    # floor(150 * 6001 / 10000) = 90: 45 more, 5 to fill the April lot back up, then 40 into the March lot
    assert (second.points_returned, pairs(second.returned), second.relot) == (45, [(april, 5), (march, 40)], None)
    assert m.remaining(march, april) == [40, 100]
    # the points keep their lots' expiry
    assert (m.lot(march).expires_at, m.lot(april).expires_at) == (sh(2027, 4, 1), sh(2027, 5, 1))
    assert m.state.lifetime_returned == 90


def test_points_whose_lot_expired_come_back_as_a_new_lot_for_thirty_days_and_a_full_refund_returns_all() -> None:
    m, march, april = _paid_150_points_of_o1()
    m.refund("O1", "F1", cmd.RefundLine("1", 6_001), now=sh(2026, 4, 3, 10))  # 90 back: 50 April, 40 March
    m.advance(sh(2027, 4, 10, 10))
    assert m.lot(march).expired and not m.lot(april).expired
    last = m.refund("O1", "F2")
    # a full refund returns all 150: the 60 left came from the March lot, expired, so they form a new lot
    assert (last.points_returned, pairs(last.returned), pairs(last.relot_sources)) == (60, [], [(march, 60)])
    assert last.relot is not None
    assert (last.relot.points, last.relot.source, last.relot.order_id) == (60, "refund_return", "O1")
    assert (last.relot.active_at, last.relot.expires_at) == (sh(2027, 4, 10, 10), sh(2027, 5, 10, 10))
    assert last.relot.expires_at - last.relot.active_at == timedelta(days=30)
    # take-back of the rest: ceil(100 * 10000 / 10000) - 61 = 39 from the sale's own lot, still active
    assert (last.points_taken, pairs(last.debits)) == (39, [("P-O1", 39)])
    assert m.state.lifetime_returned == 150


def test_points_paid_by_two_holds_from_one_lot_all_come_back() -> None:
    m = Member(sh(2026, 3, 1))
    workshop = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))
    m.hold("H1", "O1", 30, 10_050, now=sh(2026, 3, 3, 10))
    m.hold("H2", "O1", 20, 10_050)
    m.commit("H1")
    m.commit("H2")
    assert m.state.redemptions["O1"].debits == [(workshop, 30), (workshop, 20)]
    m.buy("O1", line(10_000), points_paid=50)
    refunded = m.refund("O1", "F1")
    assert (refunded.points_returned, pairs(refunded.returned)) == (50, [(workshop, 50)])
    assert m.remaining(workshop) == [100]


def test_a_full_refund_returns_the_last_point_to_the_soonest_expiring_lot_too() -> None:
    m = Member(sh(2026, 3, 1))
    march = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))
    m.redeem("X1", 99, 1_000)  # leaves 1 point in the March lot
    april = lot_id(m.award("workshop", now=sh(2026, 4, 2, 10)))
    committed = m.redeem("O1", 101, 10_101)
    assert pairs(committed.debits) == [(march, 1), (april, 100)]
    m.buy("O1", line(10_000), points_paid=101)
    refunded = m.refund("O1", "F1")
    # 100 back into the April lot (latest-expiring first), then the last point into the March lot
    assert (refunded.points_returned, pairs(refunded.returned)) == (101, [(april, 100), (march, 1)])
    assert m.remaining(march, april) == [1, 100]


def test_take_back_may_take_the_points_the_same_refund_returned_to_a_lot() -> None:
    m = Member(sh(2026, 3, 1))
    workshop = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))  # 100 points, expires end of March 2027
    m.redeem("O1", 50, 10_050)
    m.buy("O1", line(10_000), points_paid=50)  # 100 points, active 03-09, expires end of March 2027 too
    m.advance(sh(2026, 3, 10))
    spent = m.redeem("X1", 150, 100_000)
    assert pairs(spent.debits) == [(workshop, 50), ("P-O1", 100)]
    refunded = m.refund("O1", "F1")
    # 50 points come back into the workshop's lot; the 100 to take back find the sale's own lot empty, take
    # those 50 from the workshop's lot and leave 50 in arrears
    assert (refunded.points_returned, pairs(refunded.returned)) == (50, [(workshop, 50)])
    assert (refunded.points_taken, pairs(refunded.debits), refunded.arrears_added) == (100, [(workshop, 50)], 50)
    assert (m.state.active, m.state.arrears, m.remaining(workshop)) == (0, 50, [0])


def _relot_after_everything_expired() -> Member:
    """100 points pay 10% of a 1,000 fen checkout; the 900 fen earn 9 points; 13 months later both lots expired."""
    m = Member(sh(2026, 3, 1))
    paying = lot_id(m.award("workshop", now=sh(2026, 3, 10, 10)))  # expires at the end of March 2027
    m.redeem("C1", 100, 1_000)
    m.buy("C1", line(900), points_paid=100)  # 9 points, active 03-17, expires at the end of March 2027
    m.advance(sh(2027, 4, 1, 10))
    assert m.lot(paying).expires_at == sh(2027, 4, 1) and m.lot("P-C1").expired  # the paying lot was spent empty
    return m


def test_points_returned_as_a_new_lot_count_for_that_refunds_take_back() -> None:
    m = _relot_after_everything_expired()
    refunded = m.refund("C1", "F1", now=sh(2027, 4, 14, 10))
    assert refunded.relot is not None and refunded.relot.points == 100
    relot = refunded.relot.lot_id
    assert (refunded.points_taken, pairs(refunded.debits), refunded.arrears_added) == (9, [(relot, 9)], 0)
    assert (m.state.active, m.state.arrears, m.remaining(relot)) == (91, 0, [91])


def test_points_returned_as_a_new_lot_repay_arrears_first() -> None:
    m = _relot_after_everything_expired()
    m.buy("O2", line(2_000), now=sh(2027, 4, 2, 10))  # 20 points, active 04-09
    m.advance(sh(2027, 4, 9, 10))
    m.redeem("X1", 20, 1_000)
    m.refund("O2", "F2")  # nothing left to take the 20 from: arrears
    assert m.state.arrears == 20
    refunded = m.refund("C1", "F1", now=sh(2027, 4, 14, 10))
    assert refunded.relot is not None
    relot = refunded.relot.lot_id
    assert (refunded.arrears_repaid, pairs(refunded.debits), refunded.arrears_added) == (20, [(relot, 9)], 0)
    assert (m.state.active, m.state.arrears, m.remaining(relot)) == (71, 0, [71])


def test_an_order_paid_only_with_points_is_refunded_whole_and_its_points_all_come_back() -> None:
    m = Member(sh(2026, 3, 1))
    workshop = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))
    m.redeem("O1", 7, 70)  # 7 points pay all of a 0.70 CNY order: 10% of 70 fen is 7 points
    m.buy("O1", line(0), points_paid=7)
    refunded = m.refund("O1", "F1")
    assert (refunded.points_returned, pairs(refunded.returned)) == (7, [(workshop, 7)])
    assert (refunded.points_taken, refunded.growth_taken, refunded.refunded_fen) == (0, 0, 0)
    assert m.state.active == 100
    with pytest.raises(Refusal) as again:
        m.refund("O1", "F2")
    assert again.value.reason == "REFUND_EXCEEDS_LINE"


# -- never twice -------------------------------------------------------------------------------------------


def test_the_same_refund_is_applied_once_and_no_line_is_refunded_beyond_what_it_paid() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 2, 10))
    m.refund("O1", "F1", cmd.RefundLine("1", 6_000))
    with pytest.raises(Refusal) as again:
        m.refund("O1", "F1", cmd.RefundLine("1", 1_000))
    assert (again.value.reason, again.value.metadata) == ("REFUND_EXISTS", {"id": "F1"})
    with pytest.raises(Refusal) as beyond:
        m.refund("O1", "F2", cmd.RefundLine("1", 4_001))
    assert beyond.value.reason == "REFUND_EXCEEDS_LINE"
    assert beyond.value.metadata["refunded_fen"] == "6000"
    assert m.refund("O1", "F2", cmd.RefundLine("1", 4_000)).points_taken == 40
    with pytest.raises(Refusal) as whole:
        m.refund("O1", "F3")
    assert whole.value.reason == "REFUND_EXCEEDS_LINE"
    assert (m.state.pending, sum(e.points_taken for e in m.of_type(ev.PurchaseRefunded))) == (0, 100)


def test_a_new_lot_of_returned_points_expiring_with_an_older_lot_is_taken_back_after_it() -> None:
    """Equal expiry, earliest business time first: the refund's own new lot (its business time the refund's)
    comes after a lot earned a year before that expires at the same instant."""
    m = Member(sh(2026, 2, 1))
    paying = lot_id(m.award("workshop", now=sh(2026, 2, 10, 10)))  # expires at the end of February 2027
    m.redeem("C1", 100, 1_000)
    m.buy("C1", line(900), points_paid=100)  # 9 points, active 02-17, expires at the end of February 2027
    older = lot_id(m.award("workshop", now=sh(2026, 3, 2, 10)))  # expires at the end of March 2027
    m.advance(sh(2027, 3, 2))
    assert m.lot(paying).expires_at == sh(2027, 3, 1) and m.lot(paying).remaining == 0  # spent empty, then expired
    assert m.lot("P-C1").expired and not m.lot(older).expired
    refunded = m.refund("C1", "F1")  # at 2027-03-02 00:00 local: the new lot expires 30 days later, 04-01 00:00
    assert refunded.relot is not None and refunded.relot.expires_at == m.lot(older).expires_at == sh(2027, 4, 1)
    assert (refunded.points_taken, pairs(refunded.debits)) == (9, [(older, 9)])
    assert m.remaining(older, refunded.relot.lot_id) == [91, 100]


def test_points_returned_as_a_new_lot_give_the_take_back_only_what_is_left_after_repaying_arrears() -> None:
    m = _relot_after_everything_expired()
    correction = cmd.AdjustPoints("m1", -95, "FIX", "correction", "op-1", allow_arrears=True)
    m.run(correction, now=sh(2027, 4, 2, 10))
    assert m.state.arrears == 95
    refunded = m.refund("C1", "F1", now=sh(2027, 4, 14, 10))
    assert refunded.relot is not None
    relot = refunded.relot.lot_id
    # the 100 points come back, 95 repay the arrears, 5 are left for the take-back of 9: 4 back into arrears
    assert (refunded.arrears_repaid, pairs(refunded.debits), refunded.arrears_added) == (95, [(relot, 5)], 4)
    assert (m.state.active, m.state.arrears, m.remaining(relot)) == (0, 4, [0])


def test_take_back_one_point_beyond_the_sales_own_lot_takes_it_from_another_active_lot() -> None:
    m = Member(sh(2026, 3, 1))
    m.award("workshop", now=sh(2026, 3, 2, 10))  # 100 points, expires at the end of March 2027
    # 100 points, active 03-09, the same expiry as the workshop's and a later business time
    m.buy("O1", line(10_000), now=sh(2026, 3, 2, 11))
    later = m.adjust(1, now=sh(2026, 4, 1, 10)).lot  # expires at the end of April 2027
    assert later is not None
    m.redeem("X1", 101, 1_000_000)  # the workshop's 100, then 1 of O1's own lot
    refunded = m.refund("O1", "F1")
    assert (refunded.points_taken, pairs(refunded.debits)) == (100, [("P-O1", 99), (later.lot_id, 1)])
    assert (refunded.arrears_added, m.state.active, m.state.arrears) == (0, 0, 0)
