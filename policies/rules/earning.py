"""Points and growth value earned by a purchase.

Per line: ``floor(paid_fen * rate * multiplier / 100) + bonus_per_unit * quantity``, exact (integer arithmetic on
the ``Fraction``s' numerators and denominators), each line rounded down separately. The rate is the line
category's rate, else ``points_per_cny``; the bonus of a designated SKU is added after the multiplier and is not
multiplied. Growth is ``floor(total paid_fen / 100)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from policies.calendar import require_aware
from policies.model import Policy
from policies.rules.lots import activation_time, lot_expiry
from policies.rules.multipliers import applicable_multipliers, combine_multipliers

__all__ = [
    "EarningContext",
    "LineEarning",
    "OrderEarning",
    "OrderLine",
    "applicable_multipliers",
    "combine_multipliers",
    "earn_order",
    "line_rate",
]

FEN_PER_CNY = 100


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of a sale: ``paid_fen`` is the eligible amount paid in money for the whole line (after
    discounts, without the part paid with points and without shipping)."""

    line_id: str
    sku: str
    category: str
    quantity: int
    paid_fen: int

    def __post_init__(self) -> None:
        if not self.line_id:
            raise ValueError("an order line needs a line id")
        if self.quantity < 1:
            raise ValueError(f"line {self.line_id}: quantity must be at least 1, got {self.quantity}")
        if self.paid_fen < 0:
            raise ValueError(f"line {self.line_id}: paid_fen cannot be negative, got {self.paid_fen}")


@dataclass(frozen=True, slots=True)
class EarningContext:
    """What earning depends on besides the lines: the sale's business time and who the member was then."""

    occurred_at: datetime
    tier: str
    active_plans: tuple[str, ...] = ()
    birth_month: int | None = None
    last_activity_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.occurred_at)
        if self.last_activity_at is not None:
            require_aware(self.last_activity_at)
        if self.birth_month is not None and not 1 <= self.birth_month <= 12:
            raise ValueError(f"birth month must be 1..12, got {self.birth_month}")


@dataclass(frozen=True, slots=True)
class LineEarning:
    """What one line earned: ``base_points`` (rate and multiplier applied, rounded down) plus ``bonus_points``."""

    line_id: str
    paid_fen: int
    rate: Fraction
    base_points: int
    bonus_points: int
    points: int


@dataclass(frozen=True, slots=True)
class OrderEarning:
    """What a sale earns, and why: the applied multiplier, the rule behind it and every candidate."""

    lines: tuple[LineEarning, ...]
    multiplier: Fraction
    multiplier_rule: str
    candidates: tuple[tuple[str, Fraction], ...]
    points: int
    growth: int
    active_at: datetime
    expires_at: datetime


def line_rate(policy: Policy, line: OrderLine) -> Fraction:
    """Points per CNY for ``line``: its category's rate, else the program's."""
    earning = policy.earning
    return earning.category_rates.get(line.category, earning.points_per_cny)


def earn_line(policy: Policy, line: OrderLine, multiplier: Fraction) -> LineEarning:
    """What ``line`` earns under ``multiplier``."""
    rate = line_rate(policy, line)
    # floor(paid_fen * rate * multiplier / FEN_PER_CNY) on the numerators and denominators: the same exact
    # rational, one integer floor division (denominators are positive), without building Fractions on the way.
    numerator = line.paid_fen * rate.numerator * multiplier.numerator
    base = numerator // (rate.denominator * multiplier.denominator * FEN_PER_CNY)
    bonus = policy.earning.sku_bonus_points.get(line.sku, 0) * line.quantity
    return LineEarning(
        line_id=line.line_id, paid_fen=line.paid_fen, rate=rate, base_points=base, bonus_points=bonus,
        points=base + bonus,
    )


def earn_order(policy: Policy, lines: Sequence[OrderLine], ctx: EarningContext) -> OrderEarning:
    """What a sale of ``lines`` earns under ``policy`` for the member described by ``ctx``."""
    ids = [line.line_id for line in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("an order cannot have two lines with the same line id")
    candidates = applicable_multipliers(policy, ctx)
    multiplier, rule = combine_multipliers(policy, candidates)
    earned = tuple(earn_line(policy, line, multiplier) for line in lines)
    active_at = activation_time(policy, ctx.occurred_at)
    return OrderEarning(
        lines=earned,
        multiplier=multiplier,
        multiplier_rule=rule,
        candidates=tuple(candidates),
        points=sum(line.points for line in earned),
        growth=sum(line.paid_fen for line in lines) // FEN_PER_CNY,
        active_at=active_at,
        expires_at=lot_expiry(policy, active_at),
    )
