"""Rules of earning, each pinned with Little Sprout's exact numbers (docs/rules.md):

* base points of a line: ``floor(paid_fen * rate * multiplier / 100)``, exact, each line rounded separately;
* ``infant_formula`` earns at 1/2; ``LS-RICE-CEREAL-01`` carries 20 points a unit, added after the multiplier
  and not multiplied;
* every applicable multiplier is collected (tier 1.0/1.2/1.5/2.0, black-gold card 1.5, member day the 15th x2,
  birthday month x2, campaigns such as 618 and the 30-days-inactive win-back); the highest wins; the result is
  capped at 3.0 (also under the ``multiply`` stacking rule); the applied multiplier and its rule are recorded;
* "day", "month" and "the 15th" are local to Asia/Shanghai;
* growth value of an order: ``floor(total paid_fen / 100)``, no category rate, no multiplier, at business time;
* a late sale is judged as of its business time (policy version, tier, member day, birthday month, campaigns);
* the offline window: a sale may be recorded up to 30 days after its business time; later is refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import Refusal
from policies import (
    EarningContext,
    OrderLine,
    Policy,
    PolicyHistory,
    PolicyVersion,
    earn_order,
    policy_from_data,
)
from tests.unit.rules.member import POLICY, Member, line, sh

PLAIN_DAY = sh(2026, 3, 10, 10)  # not the 15th, not June, no campaign for an active member


def earn(
    *lines: OrderLine,
    at: datetime = PLAIN_DAY,
    tier: str = "regular",
    plans: tuple[str, ...] = (),
    birth_month: int | None = None,
    inactive_for: timedelta = timedelta(days=1),
    policy: Policy = POLICY,
) -> Any:
    ctx = EarningContext(
        occurred_at=at, tier=tier, active_plans=plans, birth_month=birth_month, last_activity_at=at - inactive_for
    )
    return earn_order(policy, lines, ctx)


def formula(paid_fen: int, line_id: str = "1") -> OrderLine:
    return OrderLine(line_id, "LS-FORMULA-900G", "infant_formula", 1, paid_fen)


# -- base points -------------------------------------------------------------------------------------------


def test_base_points_round_down() -> None:
    assert earn(line(1_999)).points == 19
    assert earn(line(1_999), tier="silver").points == 23  # 1999 * 6/5 / 100 = 23.988


def test_each_line_is_rounded_separately() -> None:
    result = earn(line(150, "1"), line(150, "2"))
    assert [ln.points for ln in result.lines] == [1, 1]
    assert result.points == 2  # not floor(300 / 100) = 3


def test_an_order_naming_a_line_twice_is_refused_by_the_rules() -> None:
    with pytest.raises(ValueError, match=r"^an order cannot have two lines with the same line id$"):
        earn(line(1_000, "1"), line(2_000, "1"))


def test_infant_formula_earns_at_half_rate() -> None:
    assert earn(formula(10_000)).points == 50
    assert earn(formula(999)).points == 4  # 4.995
    assert earn(formula(10_000), tier="gold").points == 75


def test_designated_sku_bonus_is_added_after_the_multiplier_and_not_multiplied() -> None:
    cereal = OrderLine("1", "LS-RICE-CEREAL-01", "baby_food", 2, 3_000)
    result = earn(cereal, at=sh(2026, 3, 15, 10))  # member day x2
    (ln,) = result.lines
    assert (ln.base_points, ln.bonus_points, ln.points) == (60, 40, 100)


def test_multipliers_are_exact_rationals_and_recorded_as_such() -> None:
    result = earn(line(999), tier="silver")
    assert result.multiplier == Fraction(6, 5)
    assert result.points == 11  # 999 * 6/5 / 100 = 11.988


# -- multipliers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "factor", "points"),
    [("regular", Fraction(1), 100), ("silver", Fraction(6, 5), 120), ("gold", Fraction(3, 2), 150), ("diamond", Fraction(2), 200)],
)
def test_tier_multipliers(tier: str, factor: Fraction, points: int) -> None:
    result = earn(line(10_000), tier=tier)
    assert (result.multiplier, result.multiplier_rule, result.points) == (factor, f"tier:{tier}", points)


def test_the_black_gold_card_multiplies_by_one_and_a_half() -> None:
    result = earn(line(10_000), plans=("black_gold",))
    assert (result.multiplier, result.multiplier_rule, result.points) == (Fraction(3, 2), "plan:black_gold", 150)


def test_the_highest_multiplier_wins() -> None:
    result = earn(line(10_000), at=sh(2026, 3, 15, 10), tier="gold", plans=("black_gold",))
    assert set(result.candidates) == {("tier:gold", Fraction(3, 2)), ("plan:black_gold", Fraction(3, 2)), ("member_day", Fraction(2))}
    assert (result.multiplier, result.multiplier_rule, result.points) == (Fraction(2), "member_day", 200)


def test_diamond_on_member_day_in_the_birthday_month_during_618_is_still_x2() -> None:
    result = earn(line(10_000), at=sh(2026, 6, 15, 10), tier="diamond", birth_month=6)
    assert len(result.candidates) == 4
    assert (result.multiplier, result.points) == (Fraction(2), 200)


def test_multiplying_stacking_is_capped_at_three() -> None:
    document = POLICY.model_dump(mode="json")
    document["multipliers"]["stacking"] = "multiply"
    multiply = policy_from_data(document)
    result = earn(line(10_000), at=sh(2026, 3, 15, 10), tier="diamond", policy=multiply)  # 2 * 2 = 4
    assert result.multiplier == Fraction(3)
    assert result.multiplier_rule == "cap"
    assert result.points == 300
    below_cap = earn(line(10_000), at=sh(2026, 3, 15, 10), tier="gold", policy=multiply)  # 1.5 * 2 = 3
    assert (below_cap.multiplier, below_cap.points) == (Fraction(3), 300)
    assert below_cap.multiplier_rule == "multiply:tier:gold*member_day"  # at the cap, not bound by it


def test_member_day_is_the_15th_in_shanghai() -> None:
    assert earn(line(10_000), at=sh(2026, 4, 15, 0, 30)).multiplier_rule == "member_day"  # 14th in UTC
    assert earn(line(10_000), at=sh(2026, 4, 15, 23, 59)).points == 200
    assert earn(line(10_000), at=sh(2026, 4, 14, 23, 30)).points == 100
    assert earn(line(10_000), at=sh(2026, 4, 16, 7, 0)).points == 100  # 15th in UTC


def test_birthday_month_doubles_in_the_local_month() -> None:
    assert earn(line(10_000), at=sh(2026, 4, 3, 10), birth_month=4).multiplier_rule == "birthday_month"
    assert earn(line(10_000), at=sh(2026, 5, 1, 0, 30), birth_month=4).points == 100  # April in UTC
    assert earn(line(10_000), at=sh(2026, 4, 1, 0, 30), birth_month=4).points == 200  # March in UTC


def test_618_campaign_runs_from_june_1_to_june_18_local() -> None:
    assert earn(line(10_000), at=sh(2026, 5, 31, 23, 59)).points == 100
    assert earn(line(10_000), at=sh(2026, 6, 1, 0, 0)).multiplier_rule == "campaign:618"
    assert earn(line(10_000), at=sh(2026, 6, 18, 23, 59)).points == 200
    assert earn(line(10_000), at=sh(2026, 6, 19, 0, 0)).points == 100


def test_win_back_doubles_after_30_days_inactive() -> None:
    assert earn(line(10_000), inactive_for=timedelta(days=30)).multiplier_rule == "campaign:win_back"
    assert earn(line(10_000), inactive_for=timedelta(days=29, hours=23)).points == 100


def test_the_applied_multiplier_and_its_rule_are_recorded_on_the_event() -> None:
    m = Member(sh(2026, 3, 1))
    recorded = m.buy("O1", line(10_000), now=sh(2026, 3, 15, 10))
    assert (recorded.multiplier, recorded.multiplier_rule, recorded.points) == ("2", "member_day", 200)
    assert {(c.rule, c.factor) for c in recorded.candidates} == {("tier:regular", "1"), ("member_day", "2")}
    assert recorded.policy_version == 1


def test_a_multiplier_bound_by_the_cap_is_recorded_as_the_cap_with_every_candidate() -> None:
    document = POLICY.model_dump(mode="json")
    document["multipliers"]["stacking"] = "multiply"
    history = PolicyHistory.starting_with(policy_from_data(document), sh(2020, 1, 1))
    m = Member(sh(2026, 3, 1), history=history, profile=cmd.Profile(birth_month=3))
    recorded = m.buy("O1", line(10_000), now=sh(2026, 3, 15, 10))  # 1 * 2 * 2 = 4 on member day in March
    assert (recorded.multiplier, recorded.multiplier_rule, recorded.points) == ("3", "cap", 300)
    assert [(c.rule, c.factor) for c in recorded.candidates] == [
        ("tier:regular", "1"), ("member_day", "2"), ("birthday_month", "2"),
    ]
    at_the_cap = m.buy("O2", line(10_000), now=sh(2026, 3, 16, 10))  # 1 * 2 = 2 in the birthday month
    assert (at_the_cap.multiplier, at_the_cap.multiplier_rule) == ("2", "multiply:tier:regular*birthday_month")


# -- growth ------------------------------------------------------------------------------------------------


def test_growth_is_one_per_cny_of_the_order_total_without_rate_or_multiplier() -> None:
    result = earn(formula(10_050, "1"), line(150, "2"), at=sh(2026, 3, 15, 10), tier="gold")
    assert [ln.points for ln in result.lines] == [100, 3]
    assert result.growth == 102  # floor(10200 / 100), not 100 + 1


def test_growth_counts_at_the_sales_business_time_not_when_points_activate() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(12_345), now=sh(2026, 3, 20, 10), at=sh(2026, 3, 18, 10))
    assert m.state.pending == 123
    assert [(g.at, g.amount) for g in m.state.growth] == [(sh(2026, 3, 18, 10), 123)]


# -- late sales and the offline window --------------------------------------------------------------------


def test_a_late_sale_earns_under_the_policy_version_in_force_at_its_business_time() -> None:
    document = POLICY.model_dump(mode="json")
    document["earning"]["points_per_cny"] = "2"
    history = PolicyHistory(
        (PolicyVersion(1, sh(2020, 1, 1), POLICY), PolicyVersion(2, sh(2026, 3, 20), policy_from_data(document)))
    )
    m = Member(sh(2026, 3, 1), history=history)
    late = m.buy("O1", line(10_000), now=sh(2026, 3, 25, 10), at=sh(2026, 3, 12, 10))
    assert (late.points, late.policy_version) == (100, 1)
    current = m.buy("O2", line(10_000))
    assert (current.points, current.policy_version) == (200, 2)


def test_a_late_sale_earns_at_the_tier_of_its_business_time() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(200_000), now=sh(2026, 3, 20, 10))  # Silver from 03-20
    assert m.state.tier == "silver"
    late = m.buy("O2", line(10_000), now=sh(2026, 3, 22, 10), at=sh(2026, 3, 12, 10))
    assert (late.tier, late.multiplier, late.points) == ("regular", "1", 100)


def test_a_late_sale_of_member_day_gets_member_day() -> None:
    m = Member(sh(2026, 3, 1))
    late = m.buy("O1", line(10_000), now=sh(2026, 3, 20, 10), at=sh(2026, 3, 15, 10))
    assert (late.multiplier_rule, late.points) == ("member_day", 200)


def test_a_late_sale_of_the_birthday_month_gets_the_birthday_multiplier() -> None:
    m = Member(sh(2026, 3, 1), profile=cmd.Profile(birth_month=3))
    late = m.buy("O1", line(10_000), now=sh(2026, 4, 2, 10), at=sh(2026, 3, 31, 10))
    assert (late.multiplier_rule, late.points) == ("birthday_month", 200)


def test_a_late_sale_of_the_campaign_window_gets_the_campaign() -> None:
    m = Member(sh(2026, 6, 1))
    late = m.buy("O1", line(10_000), now=sh(2026, 6, 20, 10), at=sh(2026, 6, 18, 10))
    assert (late.multiplier_rule, late.points) == ("campaign:618", 200)


def test_a_sale_may_be_recorded_up_to_30_days_after_its_business_time() -> None:
    m = Member(sh(2026, 3, 1))
    now = sh(2026, 4, 20, 10)
    recorded = m.buy("O1", line(10_000), now=now, at=now - timedelta(days=30))
    assert recorded.at == sh(2026, 3, 21, 10)
    with pytest.raises(Refusal) as refused:
        m.buy("O2", line(10_000), at=now - timedelta(days=30, seconds=1))
    assert refused.value.reason == "OUTSIDE_OFFLINE_WINDOW"
    assert refused.value.metadata["window_days"] == "30"
    assert "O2" not in m.state.orders


def test_events_already_recorded_are_not_re_judged_by_a_later_upgrade() -> None:
    m = Member(sh(2026, 3, 1))
    m.buy("O1", line(10_000), now=sh(2026, 3, 21, 10))
    m.buy("O2", line(200_000), now=sh(2026, 3, 22, 10), at=sh(2026, 3, 12, 10))  # late; upgrades to Silver
    assert m.state.tier == "silver"
    assert m.lot("P-O1").amount == 100
    assert [e.points for e in m.of_type(ev.PurchaseRecorded)] == [100, 2000]
