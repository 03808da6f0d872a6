"""Refunds: partial take-backs add up exactly to a full one; redeemed points come back in proportion."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import redeemed_return, refund_takeback


def test_take_back_rounds_up() -> None:
    assert refund_takeback(100, 3333, 10000, 0) == 34  # ceil(33.33)
    assert refund_takeback(100, 6666, 10000, 34) == 33  # ceil(66.66) - 34
    assert refund_takeback(100, 10000, 10000, 67) == 33
    assert refund_takeback(79, 1, 3990, 0) == 1


def test_take_back_of_a_line_that_paid_nothing_is_nothing() -> None:
    assert refund_takeback(40, 0, 0, 0) == 0


def test_redeemed_points_come_back_rounded_down_and_all_on_a_full_refund() -> None:
    assert redeemed_return(1000, 3333, 9000, 0) == 370  # floor(370.33)
    assert redeemed_return(1000, 6666, 9000, 370) == 370  # floor(740.66) - 370
    assert redeemed_return(1000, 9000, 9000, 740) == 260
    assert redeemed_return(999, 9000, 9000, 0) == 999
    assert redeemed_return(500, 0, 0, 0) == 500  # an order paid with no money comes back whole


def test_inconsistent_running_totals_are_refused() -> None:
    with pytest.raises(ValueError):
        refund_takeback(100, 10001, 10000, 0)
    with pytest.raises(ValueError):
        refund_takeback(100, 5000, 10000, 51)
    with pytest.raises(ValueError):
        redeemed_return(100, 5000, 10000, 51)
    with pytest.raises(ValueError):
        refund_takeback(-1, 0, 100, 0)


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """(earned, paid, refund amounts summing to paid)."""
    paid = draw(st.integers(min_value=1, max_value=10**7))
    earned = draw(st.integers(min_value=0, max_value=10**6))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=paid), max_size=12)))
    bounds = [0, *cuts, paid]
    return earned, paid, [b - a for a, b in itertools.pairwise(bounds)]


@given(splits())
def test_any_split_of_refunds_takes_back_exactly_the_full_amount(case: tuple[int, int, list[int]]) -> None:
    earned, paid, parts = case
    refunded = taken = 0
    for part in parts:
        refunded += part
        step = refund_takeback(earned, refunded, paid, taken)
        assert step >= 0
        taken += step
        assert taken * paid >= earned * refunded  # never in the member's favour
    assert taken == refund_takeback(earned, paid, paid, 0) == earned


@given(splits())
def test_any_split_of_refunds_returns_exactly_the_redeemed_points(case: tuple[int, int, list[int]]) -> None:
    redeemed, paid, parts = case
    refunded = returned = 0
    for part in parts:
        refunded += part
        step = redeemed_return(redeemed, refunded, paid, returned)
        assert step >= 0
        returned += step
        assert returned * paid <= redeemed * refunded  # never more than the refunded share
    assert returned == redeemed
