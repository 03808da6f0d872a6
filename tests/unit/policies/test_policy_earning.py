"""Earning on a sale: Little Sprout's arithmetic to the point."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from policies import (
    EarningContext,
    OrderLine,
    Policy,
    UnknownPlan,
    UnknownTier,
    applicable_multipliers,
    combine_multipliers,
    earn_order,
    policy_from_data,
)


def formula(paid_fen: int, line_id: str = "l1") -> OrderLine:
    return OrderLine(line_id=line_id, sku="LS-FORMULA-900G", category="infant_formula", quantity=1, paid_fen=paid_fen)


def ctx(at: datetime, tier: str = "regular", **more: Any) -> EarningContext:
    """A member active the day before (so the win-back campaign does not apply unless a test says so)."""
    more.setdefault("last_activity_at", at - timedelta(days=1))
    return EarningContext(occurred_at=at, tier=tier, **more)


def test_gold_member_day_formula_line(policy: Policy, sh) -> None:
    result = earn_order(policy, [formula(10000)], ctx(sh(2026, 3, 15, 10), "gold"))
    assert result.candidates == (("tier:gold", Fraction(3, 2)), ("member_day", Fraction(2)))
    assert (result.multiplier, result.multiplier_rule) == (Fraction(2), "member_day")
    (line,) = result.lines
    assert line.rate == Fraction(1, 2)
    assert (line.base_points, line.bonus_points, line.points) == (100, 0, 100)  # floor(10000 * 1/2 * 2 / 100)
    assert result.points == 100
    assert result.growth == 100  # growth has no category rate and no multiplier


def test_gold_formula_line_on_an_ordinary_day(policy: Policy, sh) -> None:
    result = earn_order(policy, [formula(9999)], ctx(sh(2026, 3, 16, 10), "gold"))
    assert (result.multiplier, result.multiplier_rule) == (Fraction(3, 2), "tier:gold")
    assert result.points == 74  # floor(9999 * 1/2 * 3/2 / 100) = floor(74.9925)
    assert result.growth == 99


def test_regular_buys_the_designated_rice_cereal(policy: Policy, sh) -> None:
    line = OrderLine("l1", "LS-RICE-CEREAL-01", "baby_food", quantity=2, paid_fen=3990)
    result = earn_order(policy, [line], ctx(sh(2026, 3, 16, 10)))
    assert (result.multiplier, result.multiplier_rule) == (Fraction(1), "tier:regular")
    (earned,) = result.lines
    assert (earned.base_points, earned.bonus_points, earned.points) == (39, 40, 79)
    assert result.growth == 39


def test_the_sku_bonus_is_not_multiplied(policy: Policy, sh) -> None:
    lines = [
        OrderLine("l1", "LS-RICE-CEREAL-01", "baby_food", quantity=2, paid_fen=3990),
        OrderLine("l2", "LS-RICE-CEREAL-01", "baby_food", quantity=1, paid_fen=3990),
    ]
    result = earn_order(policy, lines, ctx(sh(2026, 3, 15, 10)))
    assert result.multiplier == 2
    assert [(x.base_points, x.bonus_points, x.points) for x in result.lines] == [(79, 40, 119), (79, 20, 99)]
    assert result.points == 218
    assert result.growth == 79  # floor(7980 / 100)


def test_lines_are_rounded_down_separately(policy: Policy, sh) -> None:
    lines = [OrderLine(f"l{i}", "LS-BIB", "apparel", 1, 150) for i in range(2)]
    result = earn_order(policy, lines, ctx(sh(2026, 3, 16), "silver"))
    assert result.multiplier == Fraction(6, 5)
    assert [x.points for x in result.lines] == [1, 1]  # floor(1.8) each, not floor(3.6)
    assert result.points == 2
    assert result.growth == 3


def test_618_against_a_diamond_tier(policy: Policy, sh) -> None:
    diamond = earn_order(policy, [formula(10000)], ctx(sh(2026, 6, 10), "diamond"))
    assert diamond.candidates == (("tier:diamond", Fraction(2)), ("campaign:618", Fraction(2)))
    assert (diamond.multiplier, diamond.multiplier_rule) == (Fraction(2), "tier:diamond")  # a tie: the first wins
    assert diamond.points == 100
    gold = earn_order(policy, [formula(10000)], ctx(sh(2026, 6, 10), "gold"))
    assert (gold.multiplier, gold.multiplier_rule) == (Fraction(2), "campaign:618")


@pytest.mark.parametrize(
    ("wall", "applies"),
    [((2026, 5, 31, 23, 59), False), ((2026, 6, 1, 0, 0), True), ((2026, 6, 18, 23, 59), True), ((2026, 6, 19, 0, 0), False)],
)
def test_the_618_window_is_local_and_its_end_exclusive(policy: Policy, sh, wall: tuple[int, ...], applies: bool) -> None:
    names = [name for name, _ in applicable_multipliers(policy, ctx(sh(*wall)))]
    assert ("campaign:618" in names) is applies


def test_stacking_multiply_with_the_cap(document: dict[str, Any], sh) -> None:
    document["multipliers"]["stacking"] = "multiply"
    multiply = policy_from_data(document)
    gold = earn_order(multiply, [OrderLine("l1", "X", "toys", 1, 10000)], ctx(sh(2026, 3, 15), "gold"))
    assert (gold.multiplier, gold.multiplier_rule) == (Fraction(3), "multiply:tier:gold*member_day")  # 1.5 * 2, at the cap
    assert gold.points == 300
    diamond = earn_order(multiply, [OrderLine("l1", "X", "toys", 1, 10000)], ctx(sh(2026, 3, 15), "diamond"))
    assert (diamond.multiplier, diamond.multiplier_rule) == (Fraction(3), "cap")
    assert diamond.points == 300
    silver = earn_order(multiply, [OrderLine("l1", "X", "toys", 1, 10000)], ctx(sh(2026, 3, 16), "silver"))
    assert (silver.multiplier, silver.multiplier_rule) == (Fraction(6, 5), "multiply:tier:silver")


def test_combine_multipliers_directly(policy: Policy, document: dict[str, Any]) -> None:
    assert combine_multipliers(policy, [("tier:gold", Fraction(3, 2)), ("campaign:x", Fraction(5))]) == (Fraction(3), "cap")
    assert combine_multipliers(policy, [("a", Fraction(2)), ("b", Fraction(2))]) == (Fraction(2), "a")
    assert combine_multipliers(policy, [("a", Fraction(1)), ("b", Fraction(5, 4))]) == (Fraction(5, 4), "b")
    document["multipliers"]["stacking"] = "multiply"
    multiply = policy_from_data(document)
    assert combine_multipliers(multiply, [("a", Fraction(6, 5)), ("b", Fraction(3, 2))]) == (Fraction(9, 5), "multiply:a*b")


def test_member_day_and_birthday_month_are_local(policy: Policy, sh) -> None:
    just_after_midnight = sh(2026, 3, 15, 0, 30)  # 2026-03-14T16:30Z
    names = [name for name, _ in applicable_multipliers(policy, ctx(just_after_midnight, birth_month=3))]
    assert names == ["tier:regular", "member_day", "birthday_month"]
    april_first = sh(2026, 4, 1, 0, 30)  # still March in UTC
    assert [n for n, _ in applicable_multipliers(policy, ctx(april_first, birth_month=4))] == ["tier:regular", "birthday_month"]
    assert [n for n, _ in applicable_multipliers(policy, ctx(april_first, birth_month=3))] == ["tier:regular"]
    assert [n for n, _ in applicable_multipliers(policy, ctx(sh(2026, 3, 14, 23, 59)))] == ["tier:regular"]


def test_the_win_back_campaign_wants_30_inactive_days(policy: Policy, sh) -> None:
    sale = sh(2026, 9, 10, 12)

    def names(last: datetime | None) -> list[str]:
        return [n for n, _ in applicable_multipliers(policy, ctx(sale, last_activity_at=last))]

    assert "campaign:win_back" in names(sale - timedelta(days=30))
    assert "campaign:win_back" in names(None)
    assert "campaign:win_back" not in names(sale - timedelta(days=30) + timedelta(seconds=1))
    assert "campaign:win_back" not in names(sale - timedelta(days=3))
    after_campaign = sh(2027, 1, 1)
    assert "campaign:win_back" not in [n for n, _ in applicable_multipliers(policy, ctx(after_campaign))]


def test_the_black_gold_card_is_a_candidate(policy: Policy, sh) -> None:
    result = earn_order(policy, [OrderLine("l1", "X", "toys", 1, 10000)], ctx(sh(2026, 3, 16), "regular", active_plans=("black_gold",)))
    assert result.candidates == (("tier:regular", Fraction(1)), ("plan:black_gold", Fraction(3, 2)))
    assert (result.multiplier, result.multiplier_rule, result.points) == (Fraction(3, 2), "plan:black_gold", 150)
    diamond = earn_order(policy, [OrderLine("l1", "X", "toys", 1, 10000)], ctx(sh(2026, 3, 16), "diamond", active_plans=("black_gold",)))
    assert diamond.multiplier_rule == "tier:diamond"


def test_activation_and_expiry_are_on_the_result(policy: Policy, sh) -> None:
    result = earn_order(policy, [formula(100)], ctx(sh(2026, 3, 3, 9)))
    assert result.active_at == sh(2026, 3, 10, 9)
    assert result.expires_at == sh(2027, 4, 1)
    assert result.active_at.tzinfo == UTC


def test_nothing_is_a_float(policy: Policy, sh) -> None:
    result = earn_order(policy, [formula(12345)], ctx(sh(2026, 3, 15), "silver"))
    assert isinstance(result.multiplier, Fraction)
    assert all(isinstance(x.rate, Fraction) and type(x.points) is int for x in result.lines)
    assert type(result.points) is int and type(result.growth) is int


def test_an_empty_order_earns_nothing(policy: Policy, sh) -> None:
    result = earn_order(policy, [], ctx(sh(2026, 3, 15)))
    assert (result.points, result.growth, result.lines) == (0, 0, ())


def test_unknown_tier_or_plan_and_bad_input_are_refused(policy: Policy, sh) -> None:
    with pytest.raises(UnknownTier):
        earn_order(policy, [formula(100)], ctx(sh(2026, 3, 15), "platinum"))
    with pytest.raises(UnknownPlan):
        earn_order(policy, [formula(100)], ctx(sh(2026, 3, 15), active_plans=("white_card",)))
    with pytest.raises(ValueError):
        earn_order(policy, [formula(100), formula(200)], ctx(sh(2026, 3, 15)))
    with pytest.raises(ValueError):
        OrderLine("l1", "X", "toys", 1, -1)
    with pytest.raises(ValueError):
        EarningContext(occurred_at=datetime(2026, 3, 15), tier="regular")
