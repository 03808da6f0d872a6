"""Histories the model-based test found (shrunk), kept as plain tests with their explicit steps.

Each runs the steps through the same ``ModelMachine`` as ``test_model_based.py``: every step compares the
ledger with the reference model, so a test fails at the first step where they disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.model.test_model_based import MEMBER, ModelMachine


@contextmanager
def machine() -> Iterator[ModelMachine]:
    state = ModelMachine()
    try:
        state.enroll()
        yield state
    finally:
        state.teardown()


def run(steps: Callable[[ModelMachine], None]) -> ModelMachine:
    with machine() as state:
        steps(state)
        return state


# -- spending order ------------------------------------------------------------------------------------------


def test_equal_expiry_spends_the_lot_recorded_first() -> None:
    """Two lots with the same expiry and business time: a hold takes the one recorded first.

    (Found with lots spent latest-expiring first: the ledger then held the second adjustment's point.)
    """

    def steps(s: ModelMachine) -> None:
        s.adjust(points=1)
        s.adjust(points=1)
        s.hold(points=1, share=10, same_order=1)

    run(steps)


def test_a_hold_takes_the_soonest_expiring_lot_first() -> None:
    """A lot activated in March expires before one activated in May; a hold takes the March one first."""

    def steps(s: ModelMachine) -> None:
        s.adjust(points=100)  # active 2026-03-10, expires at the end of 2027-03
        s.advance(minutes=60 * 24 * 60)  # into May
        s.adjust(points=100)  # expires at the end of 2027-05
        s.hold(points=150, share=10, same_order=1)
        s.commit(part=0, stale=1)
        m = s.model.member(MEMBER)
        assert [lot.remaining for lot in sorted(m.lots, key=lambda lot: lot.key())] == [0, 50]

    run(steps)


# -- points returned as a new lot ----------------------------------------------------------------------------


def _relot_with_nothing_else_to_take(s: ModelMachine) -> None:
    """Points pay a checkout; 13 months later the order is refunded: the paying lot has expired, so its points
    come back as a new lot, and the sale's own lot has expired too, so the take-back finds no other lot."""
    s.adjust(points=100)  # active 2026-03-10, expires 2027-04-01 local
    s.hold(points=100, share=10, same_order=1)  # a checkout of 1,000 fen, 100 points pay 10%
    s.commit(part=0, stale=1)
    s.pay_checkout(lines=[("SKU-1", "toys", 1, 900)])  # earns 9 points (pending until 2026-03-17)
    s.advance(minutes=60 * 24 * 400)  # 2027-04-14: both lots expired
    s.refund(whole=True)  # 100 points come back as a new lot; 9 points to take back


def test_points_returned_as_a_new_lot_count_for_the_take_back() -> None:
    """(Found when the ledger left the new lot out of the take-back: the member kept 100 points and owed 9.)"""
    state = run(_relot_with_nothing_else_to_take)
    m = state.model.member(MEMBER)
    assert (m.active, m.arrears) == (91, 0)


def test_an_order_paid_only_with_points_is_refunded_whole() -> None:
    """Points pay all of a checkout whose lines cost nothing in money; the whole refund returns every point.

    (Found when the ledger refused it as already fully refunded.)"""

    def steps(s: ModelMachine) -> None:
        s.adjust(points=100)
        s.hold(points=7, share=10, same_order=1)  # a checkout of 70 fen, 7 points pay 10%
        s.commit(part=0, stale=1)
        s.pay_checkout(lines=[("SKU-1", "toys", 1, 0)])
        s.refund(whole=True)
        m = s.model.member(MEMBER)
        assert (m.active, m.arrears) == (100, 0)

    run(steps)


# -- referrals -------------------------------------------------------------------------------------------------


def test_a_referral_counts_only_for_an_invitee_with_a_purchase_and_once() -> None:
    """An invitee who bought earns the inviter a referral; one who has not bought, or the same one again, does not."""

    def steps(s: ModelMachine) -> None:
        s.invite(buys=True, days_ago=1)
        s.award("referral", reuse=1, pick=0)  # inv: enrolled and bought yesterday
        s.invite(buys=False)
        s.award("referral", reuse=1, pick=1)  # REFERRAL_NOT_QUALIFIED
        s.award("referral", reuse=1, pick=0)  # REFERENCE_ALREADY_AWARDED
        m = s.model.member(MEMBER)
        assert (len(m.referrals), m.active) == (1, 200)

    run(steps)
