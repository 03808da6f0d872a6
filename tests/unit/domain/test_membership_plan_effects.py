"""A paid membership in force changes what a member's sale earns and how much of an order points may pay."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.earning import quote
from ledger.domain.errors import Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)
SALE = cmd.RecordPurchase(
    "m1", "O1", (OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=10_000),), 10_000
)


def run(state: MemberState, command: cmd.MemberCommand) -> list[ev.MemberEvent]:
    fold(state, tick(state, CTX))
    events = decide(command, state, CTX)
    fold(state, events)
    return events


def black_gold_member() -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    run(state, cmd.PurchaseMembership("m1", "M1", "black_gold", 19_900))
    assert state.active_plans(T0) == ("black_gold",)
    return state


def test_a_sale_of_a_black_gold_member_earns_at_the_plans_multiplier() -> None:
    assert str(quote(SALE, black_gold_member(), CTX).multiplier) == "3/2"


def test_points_may_pay_up_to_the_plans_share_of_an_order() -> None:
    state = black_gold_member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 2_000, 100_00))
    with pytest.raises(Refusal) as caught:
        decide(cmd.HoldPoints("m1", "H2", "O1", 1, 100_00), state, CTX)
    assert (caught.value.metadata["cap_points"], caught.value.metadata["cap_share"]) == ("2000", "0.2")
