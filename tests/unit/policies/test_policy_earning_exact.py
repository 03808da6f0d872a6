"""A line's base points are exactly ``floor(paid_fen * rate * multiplier / 100)`` for any rates and fen.

``earn_line`` computes it on the numerators and denominators; this compares it with the same formula in
``Fraction`` arithmetic (how it was written before) on random rates and multipliers (negative ones too) and amounts.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from policies import OrderLine, little_sprout
from policies.rules.earning import FEN_PER_CNY, earn_line

POLICY = little_sprout()

ratios = st.fractions(min_value=Fraction(-50), max_value=Fraction(50), max_denominator=10_000)
amounts = st.integers(min_value=0, max_value=10**12)
categories = st.sampled_from(["infant_formula", "diapers", "toys", "no-such-category"])


def as_fraction_arithmetic(paid_fen: int, rate: Fraction, multiplier: Fraction) -> int:
    return math.floor(paid_fen * rate * multiplier / FEN_PER_CNY)


@settings(max_examples=400)
@given(paid_fen=amounts, rate=ratios, multiplier=ratios, category=categories)
def test_base_points_equal_the_fraction_formula(
    paid_fen: int, rate: Fraction, multiplier: Fraction, category: str
) -> None:
    earning = POLICY.earning.model_copy(update={"points_per_cny": rate})
    policy = POLICY.model_copy(update={"earning": earning})
    line = OrderLine(line_id="l1", sku="SKU-X", category=category, quantity=1, paid_fen=paid_fen)
    result = earn_line(policy, line, multiplier)
    expected_rate = policy.earning.category_rates.get(category, rate)
    assert result.rate == expected_rate
    assert result.base_points == as_fraction_arithmetic(paid_fen, expected_rate, multiplier)
    assert result.points == result.base_points + result.bonus_points


@given(paid_fen=amounts, multiplier=ratios)
def test_integer_rates_and_multipliers_too(paid_fen: int, multiplier: Fraction) -> None:
    """Rates held as ints (a document's ``2``) have a numerator and a denominator of 1 as well."""
    earning = POLICY.earning.model_copy(update={"points_per_cny": 3, "category_rates": {}})
    policy = POLICY.model_copy(update={"earning": earning})
    line = OrderLine(line_id="l1", sku="SKU-X", category="toys", quantity=2, paid_fen=paid_fen)
    result = earn_line(policy, line, multiplier)
    assert result.base_points == math.floor(paid_fen * 3 * multiplier / FEN_PER_CNY)
    whole = earn_line(policy, line, 2)  # type: ignore[arg-type]
    assert whole.base_points == (paid_fen * 6) // FEN_PER_CNY
