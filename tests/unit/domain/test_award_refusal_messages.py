"""Behaviour awards refused or invalid, exactly as the caller receives them (field, reason, message, metadata), and
which awards name an invitee the writer must look up."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.earning import names_an_invitee
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
LATE = PolicyHistory.starting_with(little_sprout(), datetime(2027, 1, 1, tzinfo=SH))


def ctx(h: PolicyHistory = HISTORY, invitee: MemberState | None = None) -> Context:
    return Context(now=T0, at=T0, policies=h, invitee=invitee)


def run(state: MemberState, command: cmd.MemberCommand) -> None:
    fold(state, tick(state, ctx()))
    fold(state, decide(command, state, ctx()))


def member(member_id: str = "m1") -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    run(state, cmd.EnrollMember(member_id, ()))
    return state


def raised(kind: type[Exception], call: Any, *args: Any) -> Any:
    with pytest.raises(kind) as caught:
        call(*args)
    return caught.value


def test_an_unknown_behaviour_is_invalid_listing_the_known_ones_in_order() -> None:
    e = raised(InvalidCommand, decide, cmd.AwardPoints("m1", "dance", "d-1"), member(), ctx())
    assert (e.field, e.message) == (
        "behaviour",
        "unknown behaviour 'dance'; known: check_in, offline_event, referral, review, review_with_photos, workshop",
    )


def test_a_missing_reference_is_invalid_saying_why_it_is_needed() -> None:
    e = raised(InvalidCommand, decide, cmd.AwardPoints("m1", "review", ""), member(), ctx())
    assert (e.field, e.message) == (
        "reference",
        "is required for review: the id of what is rewarded, so it is awarded once",
    )


def test_a_reference_awarded_twice_is_refused_naming_it() -> None:
    state = member()
    run(state, cmd.AwardPoints("m1", "review", "R-1"))
    r = raised(Refusal, decide, cmd.AwardPoints("m1", "review", "R-1"), state, ctx())
    assert (r.reason, r.message, r.metadata) == (
        "REFERENCE_ALREADY_AWARDED",
        "review was already awarded for 'R-1'",
        {"behaviour": "review", "reference": "R-1"},
    )


def test_a_referral_of_someone_without_a_purchase_is_refused_naming_them() -> None:
    r = raised(Refusal, decide, cmd.AwardPoints("m1", "referral", "m2"), member(), ctx(invitee=member("m2")))
    assert (r.reason, r.message, r.metadata) == (
        "REFERRAL_NOT_QUALIFIED",
        "'m2' is not a member of this program with a recorded purchase",
        {"reference": "m2"},
    )


def test_only_a_referral_with_a_reference_names_an_invitee() -> None:
    assert names_an_invitee(cmd.AwardPoints("m1", "referral", "m2"), ctx())
    assert not names_an_invitee(cmd.AwardPoints("m1", "referral", ""), ctx())
    assert not names_an_invitee(cmd.AwardPoints("m1", "review", "R-1"), ctx())
    assert not names_an_invitee(cmd.AwardPoints("m1", "check_in", ""), ctx())
    assert not names_an_invitee(cmd.AwardPoints("m1", "dance", "m2"), ctx())


def test_without_a_policy_in_force_no_award_names_an_invitee() -> None:
    assert not names_an_invitee(cmd.AwardPoints("m1", "referral", "m2"), ctx(LATE))
