"""The points-mall exchange decision's edges: its refusals as the caller receives them, the entitlement it grants
(its id and the tier it is judged by), a stock that was not loaded, and the limit count of a reward without one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.mall import exchanged_in_period
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand) -> list[ev.MemberEvent]:
    fold(state, tick(state, CTX))
    events = decide(command, state, CTX)
    fold(state, events)
    return events


def member(points: int = 10_000) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", points, "GOODWILL", "opening", "op"))
    return state


def raised(kind: type[Exception], call: Any, *args: Any) -> Any:
    with pytest.raises(kind) as caught:
        call(*args)
    return caught.value


def test_an_unknown_reward_is_invalid_naming_it() -> None:
    e = raised(InvalidCommand, decide, cmd.ExchangePoints("m1", "X1", "yacht"), member(), CTX)
    assert (e.field, e.message) == (
        "reward_id",
        "unknown reward 'yacht' in the points mall of this policy version",
    )


def test_a_refused_exchange_carries_the_rules_message_and_names_the_reward() -> None:
    r = raised(Refusal, decide, cmd.ExchangePoints("m1", "X1", "home_delivery"), member(), CTX)
    assert (r.reason, r.message, r.metadata) == (
        "TIER_NOT_ELIGIBLE",
        "Free home delivery needs tier silver or above; the member is regular",
        {"reward_id": "home_delivery", "tier": "regular", "min_tier": "silver"},
    )


def test_the_entitlement_is_numbered_as_the_exchanges_first_and_judged_at_a_temporary_upgrade() -> None:
    state = member()
    ends = T0 + timedelta(days=30)
    run(state, cmd.OverrideTier("m1", "gold", "temporary_upgrade", ends, "campaign", "op"))
    version = state.version
    exchanged, granted = decide(cmd.ExchangePoints("m1", "X1", "home_delivery"), state, CTX)
    assert isinstance(exchanged, ev.PointsExchanged) and isinstance(granted, ev.EntitlementGranted)
    assert exchanged.tier == "gold"
    assert granted.entitlement_id == f"m1/E-mall_home_delivery-{version + 1}.1"
    assert exchanged.entitlement_id == granted.entitlement_id


def test_an_exchange_without_its_stock_loaded_fails_naming_the_reward() -> None:
    with pytest.raises(
        AssertionError, match=r"^the stock of nursing_pillow was not loaded for the exchange$"
    ):
        decide(cmd.ExchangePoints("m1", "X1", "nursing_pillow"), member(), CTX)


def test_a_reward_without_a_limit_counts_no_exchanges_in_a_period() -> None:
    state = member()
    run(state, cmd.OverrideTier("m1", "gold", "override", T0 + timedelta(days=30), "campaign", "op"))
    run(state, cmd.ExchangePoints("m1", "X1", "home_delivery"))
    reward = POLICY.mall["home_delivery"]
    assert exchanged_in_period(state, POLICY, "home_delivery", reward, T0) == 0
    coupon = POLICY.mall["coupon_20"]
    run(state, cmd.ExchangePoints("m1", "X2", "coupon_20"))
    assert exchanged_in_period(state, POLICY, "coupon_20", coupon, T0) == 1
