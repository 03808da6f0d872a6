"""The points mall's rule (``policies.judge_exchange``) and the pure exchange decision on a member's state.

The decision is a function of (policy version, state, stock, business time): given the same inputs it gives the
same events, and it never reads a clock; the stock it is given is the only stock it knows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide
from ledger.domain.decide.mall import EXCHANGE_SOURCE
from ledger.domain.errors import Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from ledger.domain.stock import StockState
from ledger.domain.streams import stock_stream
from policies import PolicyHistory, judge_exchange, limit_period, little_sprout

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
MALL = POLICY.mall


def verdict(
    reward_id: str,
    *,
    tier: str = "regular",
    at: datetime = T0,
    used: int = 0,
    left: int | None = 10,
    points: int = 10_000,
) -> str | None:
    return judge_exchange(
        POLICY, reward_id, MALL[reward_id], tier=tier, at=at, exchanged_in_period=used, units_left=left,
        available_points=points,
    ).reason  # fmt: skip


def test_the_reference_catalog_is_the_programs() -> None:
    assert {k: (r.price_points, r.stock) for k, r in MALL.items()} == {
        "nursing_pillow": (3_000, 200),
        "coupon_20": (1_500, None),
        "home_delivery": (500, None),
        "formula_coupon": (800, None),
        "gift_box_618": (5_000, 50),
    }
    assert (MALL["nursing_pillow"].limit.count, MALL["nursing_pillow"].limit.per) == (1, "year")  # type: ignore[union-attr]
    assert (MALL["coupon_20"].limit.count, MALL["coupon_20"].limit.per) == (2, "month")  # type: ignore[union-attr]
    assert POLICY.benefits[MALL["coupon_20"].benefit].validity.days == 30
    assert MALL["home_delivery"].min_tier == "silver"


def test_each_rule_refuses_with_its_reason_and_the_first_one_broken_wins() -> None:
    assert verdict("nursing_pillow") is None
    assert verdict("nursing_pillow", points=2_999) == "INSUFFICIENT_POINTS"
    assert verdict("nursing_pillow", left=0) == "OUT_OF_STOCK"
    assert verdict("nursing_pillow", left=0, points=0) == "OUT_OF_STOCK"
    assert verdict("nursing_pillow", used=1, left=0) == "EXCHANGE_LIMIT_REACHED"
    assert verdict("home_delivery") == "TIER_NOT_ELIGIBLE"
    assert (
        verdict("home_delivery", tier="silver") is None and verdict("home_delivery", tier="diamond") is None
    )
    assert verdict("gift_box_618") == "OUTSIDE_SALE_WINDOW"
    assert verdict("gift_box_618", at=datetime(2026, 5, 31, 23, 59, tzinfo=SH)) == "OUTSIDE_SALE_WINDOW"
    assert verdict("gift_box_618", at=datetime(2026, 6, 1, tzinfo=SH)) is None
    assert verdict("gift_box_618", at=datetime(2026, 6, 18, 23, 59, tzinfo=SH)) is None
    assert verdict("gift_box_618", at=datetime(2026, 6, 19, tzinfo=SH)) == "OUTSIDE_SALE_WINDOW"
    assert verdict("coupon_20", used=1, left=None) is None
    assert verdict("coupon_20", used=2, left=None) == "EXCHANGE_LIMIT_REACHED"


def test_a_reward_with_every_rule_is_judged_window_tier_limit_stock_points_in_that_order() -> None:
    """No reference reward has all five rules, so the order between some of them shows only on one that does."""
    limit = MALL["nursing_pillow"].limit
    assert limit is not None
    box = MALL["gift_box_618"].model_copy(update={"min_tier": "gold", "limit": limit})
    june, may = datetime(2026, 6, 10, tzinfo=SH), datetime(2026, 5, 31, 23, 59, tzinfo=SH)

    def judged(**kw: object) -> str | None:
        args: dict[str, object] = {"tier": "gold", "at": june, "exchanged_in_period": 0, "units_left": 1,
                                   "available_points": 10_000, **kw}  # fmt: skip
        return judge_exchange(POLICY, "box", box, **args).reason  # type: ignore[arg-type]

    everything_broken = {"tier": "regular", "exchanged_in_period": 1, "units_left": 0, "available_points": 0}
    assert judged(at=may, **everything_broken) == "OUTSIDE_SALE_WINDOW"
    assert judged(**everything_broken) == "TIER_NOT_ELIGIBLE"
    assert judged(**{**everything_broken, "tier": "gold"}) == "EXCHANGE_LIMIT_REACHED"
    assert judged(units_left=0, available_points=0) == "OUT_OF_STOCK"
    assert judged(available_points=4_999) == "INSUFFICIENT_POINTS"
    assert judged() is None and judged(tier="diamond") is None


def test_the_limit_counts_in_the_local_calendar_month_and_year() -> None:
    at = datetime(2026, 3, 31, 23, 30, tzinfo=SH)
    assert limit_period(POLICY, MALL["coupon_20"], at) == (
        datetime(2026, 3, 1, tzinfo=SH),
        datetime(2026, 4, 1, tzinfo=SH),
    )
    assert limit_period(POLICY, MALL["nursing_pillow"], at) == (
        datetime(2026, 1, 1, tzinfo=SH),
        datetime(2027, 1, 1, tzinfo=SH),
    )
    assert limit_period(POLICY, MALL["home_delivery"], at) is None


def member_with(points: int) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    ctx = Context(now=T0, at=T0, policies=HISTORY)
    fold(state, decide(cmd.EnrollMember("m1", ()), state, ctx))
    fold(state, decide(cmd.AdjustPoints("m1", points, "GOODWILL", "opening", "op1"), state, ctx))
    return state


def test_the_decision_is_pure_and_knows_only_the_stock_it_is_given() -> None:
    state = member_with(5_000)
    stock = StockState(stock_stream("ls", "nursing_pillow"), version=7, taken=199)
    ctx = Context(now=T0, at=T0, policies=HISTORY, stock=stock)
    first = decide(cmd.ExchangePoints("m1", "X1", "nursing_pillow"), state, ctx)
    assert decide(cmd.ExchangePoints("m1", "X1", "nursing_pillow"), state, ctx) == first
    exchanged, granted = first
    assert isinstance(exchanged, ev.PointsExchanged) and isinstance(granted, ev.EntitlementGranted)
    assert (exchanged.points, exchanged.stock_stream, exchanged.policy_version) == (3_000, stock.stream_id, 1)
    assert granted.source == f"{EXCHANGE_SOURCE}X1" and granted.valid_until == T0 + timedelta(days=90)
    assert stock.taken == 199 and state.available == 5_000  # decide changed neither
    with pytest.raises(Refusal) as caught:
        decide(
            cmd.ExchangePoints("m1", "X1", "nursing_pillow"),
            state,
            replace(ctx, stock=replace(stock, taken=200)),
        )
    assert caught.value.reason == "OUT_OF_STOCK"


def test_an_exchange_without_its_stock_loaded_is_a_bug_not_a_free_unit() -> None:
    state = member_with(5_000)
    with pytest.raises(AssertionError):
        decide(
            cmd.ExchangePoints("m1", "X1", "nursing_pillow"), state, Context(now=T0, at=T0, policies=HISTORY)
        )


def test_an_exchange_given_another_rewards_stock_is_a_bug_not_a_unit_of_the_wrong_stock() -> None:
    state = member_with(5_000)
    other = StockState(stock_stream("ls", "gift_box_618"), version=3, taken=3)
    with pytest.raises(AssertionError):
        decide(
            cmd.ExchangePoints("m1", "X1", "nursing_pillow"),
            state,
            Context(now=T0, at=T0, policies=HISTORY, stock=other),
        )


def test_a_cancellation_is_pure_and_without_its_stock_loaded_fails_rather_than_return_a_unit() -> None:
    state = member_with(5_000)
    stock = StockState(stock_stream("ls", "nursing_pillow"), version=7, taken=199)
    ctx = Context(now=T0, at=T0, policies=HISTORY, stock=stock)
    fold(state, decide(cmd.ExchangePoints("m1", "X1", "nursing_pillow"), state, ctx))
    later = T0 + timedelta(days=1)
    after_ctx = Context(now=later, at=later, policies=HISTORY, stock=replace(stock, version=8, taken=200))
    before = state.clone()
    first = decide(cmd.CancelExchange("m1", "X1", "changed mind"), state, after_ctx)
    assert decide(cmd.CancelExchange("m1", "X1", "changed mind"), state, after_ctx) == first
    cancelled = first[0]
    assert isinstance(cancelled, ev.ExchangeCancelled) and cancelled.stock_stream == stock.stream_id
    assert state == before and after_ctx.stock is not None and after_ctx.stock.taken == 200
    for wrong in (None, StockState(stock_stream("ls", "gift_box_618"), version=1, taken=1)):
        with pytest.raises(AssertionError):
            decide(
                cmd.CancelExchange("m1", "X1", "changed mind"),
                state,
                Context(now=later, at=later, policies=HISTORY, stock=wrong),
            )
