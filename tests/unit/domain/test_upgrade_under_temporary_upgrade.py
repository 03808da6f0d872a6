"""An upgrade earned above a temporary upgrade: the member is treated as the higher tier, and gets its perks."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand) -> list[ev.MemberEvent]:
    fold(state, tick(state, CTX))
    events = decide(command, state, CTX)
    fold(state, events)
    return events


def test_earning_gold_above_a_temporary_silver_grants_golds_perks() -> None:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.OverrideTier("m1", "silver", "temporary_upgrade", T0 + timedelta(days=30), "trial", "op"))
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=500_000)
    events = run(state, cmd.RecordPurchase("m1", "O1", (line,), 500_000))
    assert [(e.from_tier, e.to_tier) for e in events if isinstance(e, ev.TierChanged)] == [
        ("regular", "gold")
    ]
    assert "priority_trial" in {e.benefit for e in events if isinstance(e, ev.EntitlementGranted)}
