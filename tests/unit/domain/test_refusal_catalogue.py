"""The refusals of the household, erasure and membership decisions, each exactly as the caller receives it.

Each case pins the exception type, the reason code (or the kind of thing not found), the message and the
metadata (the public keys of docs/errors.md, values as the API sends them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import (
    CancelMembership,
    CreateHousehold,
    EnrollMember,
    EraseMember,
    JoinHousehold,
    LeaveHousehold,
    MemberCommand,
    MergeMembers,
    PurchaseMembership,
    TransferPoints,
)
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.household import already_in, create, join, leave, transfer
from ledger.domain.decide.members import erase, merge
from ledger.domain.errors import NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import Membership, MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def ctx(now: datetime = T0) -> Context:
    return Context(now=now, at=now, policies=HISTORY)


def member(member_id: str, *identities: str) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    fold(state, decide(EnrollMember(member_id, identities), state, ctx()))
    return state


def run(state: MemberState, command: MemberCommand, now: datetime = T0) -> list[ev.MemberEvent]:
    fold(state, tick(state, ctx(now)))
    events = decide(command, state, ctx(now))
    fold(state, events)
    return events


def refusal(call: Any, *args: Any) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call(*args)
    return caught.value


def not_found(call: Any, *args: Any) -> NotFound:
    with pytest.raises(NotFound) as caught:
        call(*args)
    return caught.value


def household_of_two() -> tuple[MemberState, MemberState]:
    owner, m2 = member("m1"), member("m2")
    fold(owner, create(CreateHousehold("m1"), owner, ctx()))
    mine, theirs = join(JoinHousehold("m2", "m1"), m2, owner, ctx())
    fold(m2, mine)
    fold(owner, theirs)
    return owner, m2


# -- households ------------------------------------------------------------------------------------------------


def test_an_owner_opening_a_second_household_is_refused_already_in_its_own() -> None:
    owner, _ = household_of_two()
    r = refusal(create, CreateHousehold("m1"), owner, ctx())
    assert (r.reason, r.message) == ("ALREADY_IN_HOUSEHOLD", "member m1 is already in the household of m1")
    assert r.metadata == {"member_id": "m1", "owner_member_id": "m1"}
    assert str(r) == "ALREADY_IN_HOUSEHOLD: member m1 is already in the household of m1"


def test_a_member_joining_a_second_household_is_refused_naming_the_first_owner() -> None:
    _, m2 = household_of_two()
    other = member("m3")
    fold(other, create(CreateHousehold("m3"), other, ctx()))
    r = refusal(join, JoinHousehold("m2", "m3"), m2, other, ctx())
    assert (r.reason, r.message) == ("ALREADY_IN_HOUSEHOLD", "member m2 is already in the household of m1")
    assert r.metadata == {"member_id": "m2", "owner_member_id": "m1"}


def test_the_already_in_refusal_of_a_member_in_no_household_names_no_owner() -> None:
    r = already_in(member("m4"))
    assert r.reason == "ALREADY_IN_HOUSEHOLD"
    assert r.metadata == {"member_id": "m4", "owner_member_id": ""}


def test_leaving_or_giving_without_a_household_is_refused_not_in_household() -> None:
    lone, other = member("m5"), member("m6")
    for r in (
        refusal(leave, LeaveHousehold("m5"), lone, None, ctx()),
        refusal(transfer, TransferPoints("m5", "m6", "T1", 10), lone, other, ctx()),
    ):
        assert (r.reason, r.message) == ("NOT_IN_HOUSEHOLD", "member m5 is in no household")
        assert r.metadata == {"member_id": "m5"}
        assert str(r) == "NOT_IN_HOUSEHOLD: member m5 is in no household"


def test_joining_a_member_who_owns_no_household_is_refused_naming_that_member() -> None:
    joiner, owner = member("m7"), member("m8")
    r = refusal(join, JoinHousehold("m7", "m8"), joiner, owner, ctx())
    assert (r.reason, r.message, r.metadata) == (
        "NOT_IN_HOUSEHOLD",
        "member m8 owns no household",
        {"member_id": "m8"},
    )


def test_an_owner_leaving_a_household_with_members_is_refused_naming_them() -> None:
    owner, _ = household_of_two()
    m3 = member("m3")
    _, theirs = join(JoinHousehold("m3", "m1"), m3, owner, ctx())
    fold(owner, theirs)
    r = refusal(leave, LeaveHousehold("m1"), owner, None, ctx())
    assert (r.reason, r.message) == ("HOUSEHOLD_NOT_EMPTY", "the household of m1 still has 2 members")
    assert r.metadata == {"member_id": "m1", "members": "m2,m3"}


def test_a_member_leaves_only_with_its_owners_stream_loaded() -> None:
    owner, m2 = household_of_two()
    stranger = member("m9")
    for wrong in (None, stranger):
        with pytest.raises(AssertionError, match=r"^the owner's stream was loaded$"):
            leave(LeaveHousehold("m2"), m2, wrong, ctx())
    mine, theirs = leave(LeaveHousehold("m2"), m2, owner, ctx())
    assert [type(e) for e in mine] == [ev.LeftHousehold] and [type(e) for e in theirs] == [
        ev.HouseholdMemberLeft
    ]


# -- erasure ---------------------------------------------------------------------------------------------------


def test_erasing_an_unknown_member_is_not_found() -> None:
    nf = not_found(erase, EraseMember("ghost", "subject request", "DSR-1"), MemberState("p", "ghost"), ctx())
    assert (nf.kind, nf.identifier) == ("member", "ghost")
    assert str(nf) == "member 'ghost' not found"


def test_erasing_twice_is_refused_with_when_the_data_was_erased() -> None:
    state = member("m1", "phone:1")
    run(state, EraseMember("m1", "subject request", "DSR-1"))
    later = T0 + timedelta(hours=1)
    r = refusal(decide, EraseMember("m1", "again", "DSR-2"), state, ctx(later))
    assert (r.reason, r.message) == ("MEMBER_ERASED", "the personal data of member m1 was already erased")
    assert r.metadata == {"member_id": "m1", "erased_at": "2026-03-10T02:00:00Z"}


def test_an_erasure_counts_the_distinct_identities_of_the_member() -> None:
    state = member("m1", "phone:1", "card:2", "phone:1")
    [erased] = run(state, EraseMember("m1", "subject request", "DSR-1"))
    assert isinstance(erased, ev.MemberErased) and erased.identities_removed == 2


def test_erasing_a_member_merged_away_removes_none_of_the_identities_that_moved() -> None:
    target, source = member("m1"), member("m2", "phone:2", "card:2")
    mine, theirs = merge(MergeMembers("m1", "m2", "duplicate"), target, source, ctx())
    fold(target, mine)
    fold(source, theirs)
    assert source.merged_into == "m1" and source.identities  # the source still lists what it had
    [erased] = run(source, EraseMember("m2", "subject request", "DSR-3"))
    assert isinstance(erased, ev.MemberErased) and erased.identities_removed == 0


# -- memberships -----------------------------------------------------------------------------------------------


def bought(membership_id: str = "BG-1", at: datetime = T0) -> MemberState:
    state = member("m1")
    run(state, PurchaseMembership("m1", membership_id, "black_gold", 19900), at)
    return state


def test_cancelling_an_unknown_membership_is_not_found() -> None:
    nf = not_found(decide, CancelMembership("m1", "nope", "x"), bought(), ctx())
    assert (nf.kind, nf.identifier) == ("membership", "nope")
    assert str(nf) == "membership 'nope' not found"


def test_cancelling_a_cancelled_membership_is_refused_with_its_status() -> None:
    state = bought()
    run(state, CancelMembership("m1", "BG-1", "x"), T0 + timedelta(days=1))
    r = refusal(decide, CancelMembership("m1", "BG-1", "x"), state, ctx(T0 + timedelta(days=2)))
    assert (r.reason, r.message) == ("MEMBERSHIP_NOT_ACTIVE", "membership 'BG-1' is cancelled")
    assert r.metadata == {"membership_id": "BG-1", "status": "CANCELLED"}


def test_cancelling_after_the_cooling_off_period_is_refused_with_its_end() -> None:
    state = bought()
    late = T0 + timedelta(days=7)
    r = refusal(decide, CancelMembership("m1", "BG-1", "late"), state, ctx(late))
    assert r.reason == "COOLING_OFF_ENDED"
    assert r.message == "membership 'BG-1' can be cancelled only within 7 days of its purchase"
    assert r.metadata == {
        "membership_id": "BG-1",
        "cooling_off_ended_at": "2026-03-17T02:00:00Z",
        "purchased_at": "2026-03-10T02:00:00Z",
        "cooling_off_days": "7",
    }


def test_a_membership_of_a_plan_its_purchase_policy_does_not_know_has_no_cooling_off() -> None:
    # A defensive branch: the state names a plan the policy in force at the purchase does not have.
    state = member("m1")
    state.memberships["GONE-1"] = Membership(
        membership_id="GONE-1",
        plan="gone",
        price_fen=100,
        purchased_at=T0,
        term_start=T0,
        term_end=T0 + timedelta(days=365),
    )
    r = refusal(decide, CancelMembership("m1", "GONE-1", "x"), state, ctx(T0))
    assert r.reason == "COOLING_OFF_ENDED"
    assert r.message == "membership 'GONE-1' can be cancelled only within 0 days of its purchase"
    assert r.metadata == {
        "membership_id": "GONE-1",
        "cooling_off_ended_at": "2026-03-10T02:00:00Z",
        "purchased_at": "2026-03-10T02:00:00Z",
        "cooling_off_days": "0",
    }
