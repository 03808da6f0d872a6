"""Exact ratios in policy documents: rates, multipliers and shares, never floats.

A ratio is written as a string (``"1.2"``, ``"1/2"``, ``"10%"``) or an integer and is held as a
``fractions.Fraction``. It is written back as the shortest exact string: an integer, a terminating decimal
(``"1.2"``, ``"0.15"``) or a fraction (``"1/3"``).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

_NOT_A_RATIO = 'a ratio is an integer or a string such as "1.2", "1/2" or "10%"'


def parse_ratio(value: Any) -> Fraction:
    """The exact, non-negative ratio a document value stands for."""
    ratio = _exact(value)
    if ratio < 0:
        raise PydanticCustomError("ratio_negative", "a ratio cannot be negative")
    return ratio


def parse_share(value: Any) -> Fraction:
    """A ratio of a whole: between 0 and 1 inclusive (``"20%"``, ``"1/5"``, ``"0.2"``)."""
    share = parse_ratio(value)
    if share > 1:
        raise PydanticCustomError("share_too_large", "a share cannot be more than 100%")
    return share


def format_ratio(ratio: Fraction) -> str:
    """The shortest exact text for ``ratio``: ``"3"``, ``"1.2"``, ``"1/3"``."""
    numerator, denominator = ratio.numerator, ratio.denominator
    if denominator == 1:
        return str(numerator)
    twos = fives = 0
    rest = denominator
    while rest % 2 == 0:
        rest //= 2
        twos += 1
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        return f"{numerator}/{denominator}"
    places = max(twos, fives)
    scaled = abs(numerator) * 10**places // denominator
    whole, fraction = divmod(scaled, 10**places)
    sign = "-" if numerator < 0 else ""
    return f"{sign}{whole}.{fraction:0{places}d}"


def _exact(value: Any) -> Fraction:
    if isinstance(value, bool):
        raise PydanticCustomError("ratio_type", _NOT_A_RATIO)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "ratio_float", 'a ratio cannot be a float (it is not exact): write it as a string, e.g. "1.2" or "1/2"'
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PydanticCustomError("ratio_type", _NOT_A_RATIO)
        return Fraction(value)
    if isinstance(value, str):
        return _from_text(value)
    raise PydanticCustomError("ratio_type", _NOT_A_RATIO)


def _from_text(text: str) -> Fraction:
    body = text.strip()
    percent = body.endswith("%")
    if percent:
        body = body[:-1].strip()
    try:
        ratio = Fraction(body)
    except (ValueError, ZeroDivisionError):
        raise PydanticCustomError("ratio_type", _NOT_A_RATIO) from None
    return ratio / 100 if percent else ratio


_RATIO_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?(\s*%|/\d+)?\s*$"},
        {"type": "integer", "minimum": 0},
    ]
}

Ratio = Annotated[
    Fraction,
    PlainValidator(parse_ratio),
    PlainSerializer(format_ratio, return_type=str),
    WithJsonSchema(_RATIO_SCHEMA),
]
"""A non-negative exact ratio: a rate or a multiplier."""

Share = Annotated[
    Fraction,
    PlainValidator(parse_share),
    PlainSerializer(format_ratio, return_type=str),
    WithJsonSchema(_RATIO_SCHEMA),
]
"""A ratio between 0 and 1: the share of an order points may pay."""
