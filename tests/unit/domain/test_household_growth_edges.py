"""Growth counted toward a household owner's tier only while the member is still in that owner's household."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain.commands import CreateHousehold, EnrollMember, JoinHousehold
from ledger.domain.decide import Context, decide
from ledger.domain.decide.household import count_growth, create, join
from ledger.domain.evolve import fold
from ledger.domain.state import GrowthEntry, MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
CTX = Context(now=T0, at=T0, policies=HISTORY)


def member(member_id: str) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    fold(state, decide(EnrollMember(member_id, ()), state, CTX))
    return state


def test_growth_of_a_member_in_the_household_is_counted_on_the_owners_stream() -> None:
    owner, m2 = member("m1"), member("m2")
    fold(owner, create(CreateHousehold("m1"), owner, CTX))
    fold(owner, join(JoinHousehold("m2", "m1"), m2, owner, CTX)[1])
    out = count_growth(owner, "m2", [GrowthEntry(T0, 300)], CTX)
    assert [(type(e), e.amount) for e in out if isinstance(e, ev.HouseholdGrowthCounted)] == [
        (ev.HouseholdGrowthCounted, 300)
    ]


def test_growth_of_a_member_not_in_the_owners_household_counts_nothing() -> None:
    owner = member("m1")
    fold(owner, create(CreateHousehold("m1"), owner, CTX))
    assert owner.owns_household and "m3" not in owner.household_members
    assert count_growth(owner, "m3", [GrowthEntry(T0, 300)], CTX) == []


def test_growth_toward_a_member_who_owns_no_household_counts_nothing() -> None:
    assert count_growth(member("m1"), "m2", [GrowthEntry(T0, 300)], CTX) == []


def test_the_owner_is_upgraded_on_exactly_the_growth_counted_one_short_of_silver_stays_regular() -> None:
    owner, m2 = member("m1"), member("m2")
    fold(owner, create(CreateHousehold("m1"), owner, CTX))
    fold(owner, join(JoinHousehold("m2", "m1"), m2, owner, CTX)[1])
    short = count_growth(owner, "m2", [GrowthEntry(T0, 1999)], CTX)
    assert [e for e in short if isinstance(e, ev.TierChanged)] == []
    fold(owner, short)
    [changed] = [
        e for e in count_growth(owner, "m2", [GrowthEntry(T0, 1)], CTX) if isinstance(e, ev.TierChanged)
    ]
    assert (changed.from_tier, changed.to_tier, changed.growth_in_window) == ("regular", "silver", 2000)
