"""The household decisions, pure: given two members' states and the context, the events for each stream."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import (
    AdjustPoints,
    CreateHousehold,
    EnrollMember,
    JoinHousehold,
    LeaveHousehold,
    TransferPoints,
)
from ledger.domain.decide import Context, decide
from ledger.domain.decide.household import create, join, leave, transfer
from ledger.domain.errors import Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def ctx(at: datetime = T0) -> Context:
    return Context(now=at, at=at, policies=HISTORY)


def member(member_id: str, points: int = 0) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    fold(state, decide(EnrollMember(member_id, ()), state, ctx()))
    if points:
        fold(state, decide(AdjustPoints(member_id, points, "GOODWILL", "opening", "op"), state, ctx()))
    return state


def test_decisions_do_not_touch_the_states_they_are_given() -> None:
    owner, m2 = member("m1"), member("m2", 500)
    fold(owner, create(CreateHousehold("m1"), owner, ctx()))
    before = (owner.clone(), m2.clone())
    mine, theirs = join(JoinHousehold("m2", "m1"), m2, owner, ctx())
    assert (owner, m2) == before
    assert [type(e) for e in mine] == [ev.JoinedHousehold] and [type(e) for e in theirs] == [
        ev.HouseholdMemberJoined
    ]
    fold(m2, mine)
    fold(owner, theirs)
    out, into = transfer(TransferPoints("m2", "m1", "T1", 200), m2, owner, ctx())
    assert m2.available == 500 and owner.available == 0
    (given,) = out
    (received,) = into
    assert isinstance(given, ev.PointsTransferredOut) and isinstance(received, ev.PointsTransferredIn)
    assert [d.points for d in given.debits] == [t.points for t in received.lots] == [200]
    assert received.lots[0].source_lot_id == given.debits[0].lot_id


def test_a_transfer_is_judged_at_its_business_time_and_recorded_with_it() -> None:
    owner, m2 = member("m1"), member("m2", 500)
    fold(owner, create(CreateHousehold("m1"), owner, ctx()))
    mine, theirs = join(JoinHousehold("m2", "m1"), m2, owner, ctx())
    fold(m2, mine)
    fold(owner, theirs)
    later = T0 + timedelta(days=2)
    at = T0 + timedelta(days=1)
    out, into = transfer(
        TransferPoints("m2", "m1", "T1", 100), m2, owner, Context(now=later, at=at, policies=HISTORY)
    )
    (given,) = out
    assert isinstance(given, ev.PointsTransferredOut) and given.policy_version == 1
    assert given.at == into[0].at == at


def test_leaving_returns_no_event_for_an_owner_closing_and_refuses_one_with_members() -> None:
    owner, m2 = member("m1"), member("m2")
    fold(owner, create(CreateHousehold("m1"), owner, ctx()))
    mine, theirs = leave(LeaveHousehold("m1"), owner, None, ctx())
    assert [type(e) for e in mine] == [ev.HouseholdClosed] and theirs == []
    mine, theirs = join(JoinHousehold("m2", "m1"), m2, owner, ctx())
    fold(owner, theirs)
    with pytest.raises(Refusal) as caught:
        leave(LeaveHousehold("m1"), owner, None, ctx())
    assert caught.value.reason == "HOUSEHOLD_NOT_EMPTY"


def test_a_members_leave_is_written_on_both_streams_and_moves_no_point() -> None:
    owner, m2, m3 = member("m1"), member("m2", 400), member("m3")
    fold(owner, create(CreateHousehold("m1"), owner, ctx()))
    for m in (m2, m3):
        mine, theirs = join(JoinHousehold(m.member_id, "m1"), m, owner, ctx())
        fold(m, mine)
        fold(owner, theirs)
    before = (owner.clone(), m2.clone())
    mine, theirs = leave(LeaveHousehold("m2"), m2, owner, ctx())
    assert (owner, m2) == before
    assert [type(e) for e in mine] == [ev.LeftHousehold] and [type(e) for e in theirs] == [
        ev.HouseholdMemberLeft
    ]
    (left,) = mine
    (seat,) = theirs
    assert isinstance(left, ev.LeftHousehold) and isinstance(seat, ev.HouseholdMemberLeft)
    assert left.owner_member_id == "m1" and (seat.member_id, seat.members_after) == ("m2", 1)
    fold(m2, mine)
    fold(owner, theirs)
    assert m2.household_of is None and m2.lots == before[1].lots and m2.available == 400
    with pytest.raises(Refusal) as caught:
        leave(LeaveHousehold("m1"), owner, None, ctx())
    assert caught.value.reason == "HOUSEHOLD_NOT_EMPTY" and caught.value.metadata["members"] == "m3"
