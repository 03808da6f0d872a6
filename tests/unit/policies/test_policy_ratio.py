"""Ratios in policy documents are exact: strings or integers in, Fractions held, exact strings out."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from policies import Ratio, Share, format_ratio, parse_ratio


class Holder(BaseModel):
    ratio: Ratio


class ShareHolder(BaseModel):
    share: Share


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("1.2", Fraction(6, 5)),
        ("1/2", Fraction(1, 2)),
        ("10%", Fraction(1, 10)),
        ("15%", Fraction(3, 20)),
        ("2.0", Fraction(2)),
        (" 3 ", Fraction(3)),
        (3, Fraction(3)),
        (0, Fraction(0)),
        (Fraction(7, 3), Fraction(7, 3)),
        (Decimal("1.25"), Fraction(5, 4)),
    ],
)
def test_accepted_forms_validate_to_the_exact_fraction(written: object, expected: Fraction) -> None:
    value = Holder.model_validate({"ratio": written}).ratio
    assert isinstance(value, Fraction)
    assert value == expected


@pytest.mark.parametrize("written", [1.2, 0.5, True, "-1", "-10%", "abc", "1/0", "", None, [1]])
def test_floats_negatives_and_nonsense_are_refused(written: object) -> None:
    with pytest.raises(ValidationError):
        Holder.model_validate({"ratio": written})


def test_a_float_is_refused_with_advice_to_write_a_string() -> None:
    with pytest.raises(ValidationError, match="float"):
        Holder.model_validate({"ratio": 1.5})


def test_a_share_cannot_exceed_the_whole() -> None:
    assert ShareHolder.model_validate({"share": "100%"}).share == 1
    with pytest.raises(ValidationError, match="100%"):
        ShareHolder.model_validate({"share": "101%"})


@pytest.mark.parametrize(
    ("ratio", "text"),
    [(Fraction(6, 5), "1.2"), (Fraction(1, 2), "0.5"), (Fraction(3), "3"), (Fraction(1, 3), "1/3"),
     (Fraction(3, 20), "0.15"), (Fraction(1, 80), "0.0125"), (Fraction(0), "0")],
)
def test_ratios_are_written_as_the_shortest_exact_string(ratio: Fraction, text: str) -> None:
    assert format_ratio(ratio) == text
    assert Holder(ratio=ratio).model_dump() == {"ratio": text}
    assert Holder(ratio=ratio).model_dump(mode="json") == {"ratio": text}


@given(st.fractions(min_value=0, max_value=10_000))
def test_writing_and_reading_back_gives_the_same_ratio(ratio: Fraction) -> None:
    assert parse_ratio(format_ratio(ratio)) == ratio
