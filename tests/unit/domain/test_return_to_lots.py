"""Points given back to the lots they came from (refunds of points-paid orders, cancelled exchanges): a lot
whose expiry has come by ``now`` takes nothing back (its part comes back as a new lot), and a return never
gives back more than was taken."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide
from ledger.domain.decide.refunds import return_to_lots
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def member_with_a_lot() -> tuple[MemberState, str, datetime]:
    state = MemberState(program_id="ls", member_id="m1")
    ctx = Context(now=T0, at=T0, policies=HISTORY)
    fold(state, decide(cmd.EnrollMember("m1", ()), state, ctx))
    fold(state, decide(cmd.AdjustPoints("m1", 1_000, "GOODWILL", "opening", "op"), state, ctx))
    [lot] = state.lots.values()
    return state, lot.lot_id, lot.expires_at


def test_a_lot_whose_expiry_is_now_takes_nothing_back() -> None:
    state, lot_id, expires_at = member_with_a_lot()
    returned, relot = return_to_lots(state, [(lot_id, 300)], 300, 0, expires_at)
    assert (returned, relot) == ([], [ev.LotDebit(lot_id=lot_id, points=300)])
    returned, relot = return_to_lots(state, [(lot_id, 300)], 300, 0, T0)
    assert (returned, relot) == ([ev.LotDebit(lot_id=lot_id, points=300)], [])


def test_a_return_of_more_than_was_taken_is_a_bug() -> None:
    state, lot_id, _ = member_with_a_lot()
    with pytest.raises(AssertionError, match=r"^a return gives back at most what was taken$"):
        return_to_lots(state, [(lot_id, 300)], 301, 0, T0)
