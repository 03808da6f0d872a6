"""What a behaviour award records: its lot (numbered, none for an award of no points), the cap it reached in full,
and the upgrade its growth or its referral brings."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def history(policy: Policy | None = None) -> PolicyHistory:
    return PolicyHistory.starting_with(policy or little_sprout(), datetime(2020, 1, 1, tzinfo=SH))


HISTORY = history()


def run(
    state: MemberState,
    command: cmd.MemberCommand,
    h: PolicyHistory = HISTORY,
    invitee: MemberState | None = None,
) -> list[ev.MemberEvent]:
    ctx = Context(now=T0, at=T0, policies=h, invitee=invitee)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


def member(member_id: str = "m1", h: PolicyHistory = HISTORY) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    run(state, cmd.EnrollMember(member_id, ()), h)
    return state


def buyer(member_id: str, paid_fen: int = 5_000) -> MemberState:
    state = member(member_id)
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=paid_fen)
    run(state, cmd.RecordPurchase(member_id, f"O-{member_id}", (line,), paid_fen))
    return state


def refer(state: MemberState, invitee_id: str) -> list[ev.MemberEvent]:
    return run(state, cmd.AwardPoints(state.member_id, "referral", invitee_id), invitee=buyer(invitee_id))


def upgrades(events: list[ev.MemberEvent]) -> list[tuple[str, str]]:
    return [(e.from_tier, e.to_tier) for e in events if isinstance(e, ev.TierChanged)]


def test_an_awards_lot_is_numbered_by_the_stream_version_it_is_created_at() -> None:
    state = member()
    version = state.version
    (awarded, *_) = run(state, cmd.AwardPoints("m1", "review", "R-1"))
    assert isinstance(awarded, ev.PointsAwarded) and awarded.lot is not None
    assert (awarded.lot.lot_id, awarded.lot.points) == (f"B-{version + 1}", 5)


def test_an_award_of_no_points_records_no_lot() -> None:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["behaviours"]["check_in"]["points"] = 0
    h = history(policy_from_data(document))
    state = member(h=h)
    (awarded, *_) = run(state, cmd.AwardPoints("m1", "check_in", ""), h)
    assert isinstance(awarded, ev.PointsAwarded)
    assert (awarded.points, awarded.lot) == (0, None)


def test_a_cap_reached_says_which_cap_and_how_often_in_the_message() -> None:
    state = member()
    run(state, cmd.AwardPoints("m1", "check_in", ""))
    with pytest.raises(Refusal) as caught:
        decide(cmd.AwardPoints("m1", "check_in", ""), state, Context(now=T0, at=T0, policies=HISTORY))
    assert caught.value.message == "check_in: at most 1 a day in cap group check_in"


def test_the_third_referral_in_the_window_upgrades_to_silver() -> None:
    state = member()
    assert upgrades(refer(state, "i1")) == [] and upgrades(refer(state, "i2")) == []
    assert upgrades(refer(state, "i3")) == [("regular", "silver")]


def test_an_awards_growth_counts_towards_the_upgrade_it_brings() -> None:
    state = buyer("m1", paid_fen=190_000)
    assert state.tier == "regular"
    assert state.growth_between(datetime(2026, 1, 1, tzinfo=SH), T0) == 1_900
    assert upgrades(refer(state, "i1")) == [("regular", "silver")]
