"""Rules of the lots, each pinned with Little Sprout's exact numbers (docs/rules.md):

* order of lots: soonest expiry first; equal expiry, earliest business time first; then the order recorded;
* a late sale lands in the lot order by its business time;
* purchase points become active 7 days after the sale's business time; behaviour points at once;
* a lot expires at the end of the local month 12 months after the month it became active
  (active 2026-03-10 -> expires at the end of 2027-03-31, Asia/Shanghai);
* arrears are repaid first from points as they become active, before anything else can spend them.
"""

from __future__ import annotations

from ledger.domain import events as ev
from tests.unit.rules.member import Member, line, sh


def test_spending_takes_the_soonest_expiring_lot_first() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 25, 10))  # 100 points, active 2026-04-01, expires end of April 2027
    award = m.award("workshop", now=sh(2026, 3, 28, 10))  # 100 points, active at once, expires end of March 2027
    assert award.lot is not None
    assert m.lot("P-O1").expires_at == sh(2027, 5, 1)
    assert award.lot.expires_at == sh(2027, 4, 1)
    m.advance(sh(2026, 4, 2))
    committed = m.redeem("R1", 50, 100_000)
    assert [(d.lot_id, d.points) for d in committed.debits] == [(award.lot.lot_id, 50)]
    assert m.remaining(award.lot.lot_id, "P-O1") == [50, 100]


def test_spending_past_the_soonest_lot_moves_on_to_the_next_expiring() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 25, 10))
    award = m.award("workshop", now=sh(2026, 3, 28, 10))
    assert award.lot is not None
    m.advance(sh(2026, 4, 2))
    committed = m.redeem("R1", 130, 100_000)
    assert [(d.lot_id, d.points) for d in committed.debits] == [(award.lot.lot_id, 100), ("P-O1", 30)]


def test_equal_expiry_earliest_business_time_first_even_when_recorded_later() -> None:
    m = Member(sh(2026, 3, 1))
    award = m.award("workshop", now=sh(2026, 3, 20, 10))  # business time 03-20, expires end of March 2027
    # An offline sale of 03-02 synced on 03-22: active since 03-09, also expiring at the end of March 2027.
    m.buy("O1", line(10_000), now=sh(2026, 3, 22, 10), at=sh(2026, 3, 2, 10))
    assert award.lot is not None
    assert m.lot("P-O1").expires_at == award.lot.expires_at == sh(2027, 4, 1)
    assert m.lot("P-O1").seq > m.lot(award.lot.lot_id).seq
    committed = m.redeem("R1", 50, 100_000)
    assert [(d.lot_id, d.points) for d in committed.debits] == [("P-O1", 50)]
    assert m.remaining("P-O1", award.lot.lot_id) == [50, 100]


def test_equal_expiry_and_business_time_the_order_recorded_decides() -> None:
    m = Member(sh(2026, 3, 1))
    first = m.award("review", "r-1", now=sh(2026, 3, 20, 10))  # 5 points
    second = m.award("review_with_photos", "r-2")  # 10 points, same instant, same expiry
    assert first.lot is not None and second.lot is not None
    assert (first.at, first.lot.expires_at) == (second.at, second.lot.expires_at)
    committed = m.redeem("R1", 3, 10_000)
    assert [(d.lot_id, d.points) for d in committed.debits] == [(first.lot.lot_id, 3)]
    assert m.remaining(first.lot.lot_id, second.lot.lot_id) == [2, 10]


def test_a_manual_debit_follows_the_same_lot_order() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 25, 10))
    award = m.award("workshop", now=sh(2026, 3, 28, 10))
    assert award.lot is not None
    m.advance(sh(2026, 4, 2))
    adjusted = m.adjust(-40)
    assert [(d.lot_id, d.points) for d in adjusted.debits] == [(award.lot.lot_id, 40)]


def test_purchase_points_become_active_seven_days_after_business_time() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 3, 10, 15))
    lot = m.lot("P-O1")
    assert lot.active_at == sh(2026, 3, 10, 10, 15)
    assert (m.state.pending, m.state.active) == (100, 0)
    m.advance(sh(2026, 3, 10, 10, 14, 59))
    assert (m.state.pending, m.state.active) == (100, 0)
    m.advance(sh(2026, 3, 10, 10, 15))
    assert (m.state.pending, m.state.active) == (0, 100)
    assert [e.at for e in m.of_type(ev.LotActivated)] == [sh(2026, 3, 10, 10, 15)]


def test_a_late_sale_activates_seven_days_after_its_business_time_not_its_recording() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 12, 10), at=sh(2026, 3, 8, 10))
    assert m.lot("P-O1").active_at == sh(2026, 3, 15, 10)
    m.advance(sh(2026, 3, 15, 10))
    assert m.state.active == 100


def test_behaviour_points_are_active_at_once() -> None:
    m = Member(sh(2026, 3, 1))
    award = m.award("workshop", now=sh(2026, 3, 31, 23, 30))
    assert award.lot is not None
    assert award.lot.active_at == sh(2026, 3, 31, 23, 30)
    assert (m.state.active, m.state.pending) == (100, 0)
    assert award.lot.expires_at == sh(2027, 4, 1)  # March locally (it is 15:30 UTC)


def test_active_2026_03_10_expires_at_the_end_of_2027_03_31_shanghai() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 3, 10, 15))  # active 2026-03-10 10:15
    assert m.lot("P-O1").expires_at == sh(2027, 4, 1)
    m.advance(sh(2027, 3, 31, 23, 59, 59))
    assert m.state.active == 100 and not m.lot("P-O1").expired
    m.advance(sh(2027, 4, 1))
    assert m.state.active == 0 and m.lot("P-O1").expired
    assert [(e.at, e.points) for e in m.of_type(ev.LotExpired)] == [(sh(2027, 4, 1), 100)]


def test_activation_late_on_the_last_day_of_a_month_expires_with_that_local_month() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 24, 23, 30))  # active 2026-03-31 23:30 local, 15:30 UTC
    assert m.lot("P-O1").expires_at == sh(2027, 4, 1)
    m.buy("O2", line(10_000), now=sh(2026, 3, 25, 5, 0))  # active 2026-04-01 05:00 local, still March in UTC
    assert m.lot("P-O2").expires_at == sh(2027, 5, 1)


def _in_arrears_of_100() -> Member:
    """A member who spent a sale's 100 points and then had the sale refunded: arrears of 100."""
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 1, 10))
    m.advance(sh(2026, 3, 9))
    m.redeem("R1", 100, 100_000)
    refunded = m.refund("O1", "F1")
    assert (refunded.points_taken, refunded.arrears_added) == (100, 100)
    assert (m.state.arrears, m.state.active) == (100, 0)
    return m


def test_a_lot_that_activates_in_arrears_repays_them_first() -> None:
    m = _in_arrears_of_100()
    m.buy("O2", line(15_000), now=sh(2026, 3, 9, 12))  # 150 points, active 03-16 12:00
    assert (m.state.arrears, m.state.pending) == (100, 150)
    m.advance(sh(2026, 3, 16, 12))
    activated = m.of_type(ev.LotActivated)[-1]
    assert (activated.lot_id, activated.points, activated.arrears_repaid) == ("P-O2", 150, 100)
    assert (m.state.arrears, m.state.active, m.lot("P-O2").remaining) == (0, 50, 50)


def test_a_late_sale_already_active_when_recorded_repays_arrears_first() -> None:
    m = _in_arrears_of_100()
    m.buy("O2", line(15_000), now=sh(2026, 3, 20, 12), at=sh(2026, 3, 10, 12))
    activated = m.of_type(ev.LotActivated)[-1]
    assert (activated.lot_id, activated.arrears_repaid) == ("P-O2", 100)
    assert (m.state.arrears, m.state.available) == (0, 50)


def test_behaviour_points_earned_in_arrears_repay_them_first() -> None:
    m = _in_arrears_of_100()
    award = m.award("offline_event")  # 50 points
    assert award.arrears_repaid == 50
    assert (m.state.arrears, m.state.available) == (50, 0)
