"""More refusals exactly as the caller receives them: enrolment, merging, writes on a merged member, households
switched off or full, transfers, and an exchange id used twice (type, reason, message, metadata)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.household import create, join, transfer
from ledger.domain.decide.members import merge
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def history(policy: Policy | None = None) -> PolicyHistory:
    return PolicyHistory.starting_with(policy or little_sprout(), datetime(2020, 1, 1, tzinfo=SH))


HISTORY = history()


def ctx(h: PolicyHistory = HISTORY) -> Context:
    return Context(now=T0, at=T0, policies=h)


def run(state: MemberState, command: cmd.MemberCommand, h: PolicyHistory = HISTORY) -> None:
    fold(state, tick(state, ctx(h)))
    fold(state, decide(command, state, ctx(h)))


def member(member_id: str, points: int = 0) -> MemberState:
    state = MemberState(program_id="p", member_id=member_id)
    run(state, cmd.EnrollMember(member_id, ()))
    if points:
        run(state, cmd.AdjustPoints(member_id, points, "GOODWILL", "opening", "op"))
    return state


def raised(kind: type[Exception], call: Any, *args: Any) -> Any:
    with pytest.raises(kind) as caught:
        call(*args)
    return caught.value


def no_households() -> PolicyHistory:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["household"]["enabled"] = False
    return history(policy_from_data(document))


def household(*member_ids: str, points: int = 0) -> list[MemberState]:
    owner, *others = (member(m, points) for m in member_ids)
    fold(owner, create(cmd.CreateHousehold(owner.member_id), owner, ctx()))
    for m in others:
        mine, theirs = join(cmd.JoinHousehold(m.member_id, owner.member_id), m, owner, ctx())
        fold(m, mine)
        fold(owner, theirs)
    return [owner, *others]


def test_enrolling_twice_is_refused_naming_the_member() -> None:
    r = raised(Refusal, decide, cmd.EnrollMember("m1", ()), member("m1"), ctx())
    assert (r.reason, r.message, r.metadata) == (
        "MEMBER_EXISTS",
        "member m1 is already enrolled",
        {"id": "m1"},
    )


def test_a_write_on_an_unknown_member_is_not_found() -> None:
    nf = raised(
        NotFound, decide, cmd.AdjustPoints("m9", 5, "GOODWILL", "n", "op"), MemberState("p", "m9"), ctx()
    )
    assert (nf.kind, nf.identifier) == ("member", "m9")


def test_merging_refusals() -> None:
    target, source = member("m1"), member("m2", 1_000)
    bad = raised(InvalidCommand, merge, cmd.MergeMembers("m1", "m1"), target, target, ctx())
    assert (bad.field, bad.message) == ("source_member_id", "a member cannot be merged into itself")
    run(source, cmd.HoldPoints("m2", "H1", "O1", 100, 10_000))
    r = raised(Refusal, merge, cmd.MergeMembers("m1", "m2"), target, source, ctx())
    assert (r.reason, r.message) == ("HOLDS_OPEN", "member m2 has open holds; commit or release them first")
    assert r.metadata == {"member_id": "m2", "open_holds": "1"}
    _, inside = household("m3", "m4")
    r = raised(Refusal, merge, cmd.MergeMembers("m1", "m4"), target, inside, ctx())
    assert r.reason == "SOURCE_IN_HOUSEHOLD"
    assert r.message == "member m4 is in the household of m3; it leaves it first"
    assert r.metadata == {"member_id": "m4", "owner_member_id": "m3"}


def test_a_write_on_a_merged_member_is_refused_naming_the_survivor() -> None:
    target, source = member("m1"), member("m2")
    _, theirs = merge(cmd.MergeMembers("m1", "m2"), target, source, ctx())
    fold(source, theirs)
    r = raised(Refusal, decide, cmd.AdjustPoints("m2", 5, "GOODWILL", "n", "op"), source, ctx())
    assert (r.reason, r.message) == ("MEMBER_MERGED", "member m2 was merged into m1")
    assert r.metadata == {"member_id": "m2", "merged_into": "m1"}


def test_households_switched_off_refuse_opening_with_no_metadata() -> None:
    h = no_households()
    r = raised(Refusal, create, cmd.CreateHousehold("m1"), member("m1"), ctx(h))
    assert (r.reason, r.message, r.metadata) == (
        "HOUSEHOLDS_DISABLED",
        "this program has no family accounts",
        {},
    )


def test_joining_refusals() -> None:
    owner, *_ = household("m1", "m2", "m3", "m4", "m5", "m6")
    bad = raised(InvalidCommand, join, cmd.JoinHousehold("m1", "m1"), owner, owner, ctx())
    assert (bad.field, bad.message) == ("owner_member_id", "a member cannot join its own household")
    r = raised(Refusal, join, cmd.JoinHousehold("m7", "m1"), member("m7"), owner, ctx())
    assert r.reason == "HOUSEHOLD_FULL"
    assert r.message == "the household already has its owner and 5 members (at most 5)"
    assert r.metadata == {"max_members": "5", "members": "5", "owner_member_id": "m1"}


def test_transfer_refusals() -> None:
    owner, giver = household("m1", "m2", points=500)
    bad = raised(InvalidCommand, transfer, cmd.TransferPoints("m2", "m2", "T1", 10), giver, giver, ctx())
    assert (bad.field, bad.message) == ("to_member_id", "a member cannot transfer points to itself")
    bad = raised(InvalidCommand, transfer, cmd.TransferPoints("m2", "m1", "T1", 0), giver, owner, ctx())
    assert (bad.field, bad.message) == ("points", "must be positive")
    outsider = member("m9")
    r = raised(Refusal, transfer, cmd.TransferPoints("m2", "m9", "T1", 10), giver, outsider, ctx())
    assert (r.reason, r.message) == ("NOT_SAME_HOUSEHOLD", "members m2 and m9 are not in the same household")
    assert r.metadata == {"member_id": "m2", "to_member_id": "m9"}
    out, _ = transfer(cmd.TransferPoints("m2", "m1", "T1", 10), giver, owner, ctx())
    fold(giver, out)
    r = raised(Refusal, transfer, cmd.TransferPoints("m2", "m1", "T1", 10), giver, owner, ctx())
    assert (r.reason, r.message, r.metadata) == (
        "TRANSFER_EXISTS",
        "transfer T1 already exists",
        {"id": "T1"},
    )


def test_an_exchange_id_used_twice_is_refused() -> None:
    state = member("m1", 5_000)
    run(state, cmd.ExchangePoints("m1", "X1", "coupon_20"))
    r = raised(Refusal, decide, cmd.ExchangePoints("m1", "X1", "coupon_20"), state, ctx())
    assert (r.reason, r.message, r.metadata) == (
        "EXCHANGE_EXISTS",
        "exchange X1 already exists",
        {"id": "X1"},
    )


def test_a_merge_records_its_reason_on_both_streams_and_moves_a_single_point() -> None:
    target, source = member("m1"), member("m2", 1)
    mine, theirs = merge(cmd.MergeMembers("m1", "m2", "duplicate card"), target, source, ctx())
    absorbed, merged = mine[0], theirs[0]
    assert isinstance(absorbed, ev.MemberAbsorbed) and isinstance(merged, ev.MemberMerged)
    assert (absorbed.reason, merged.reason) == ("duplicate card", "duplicate card")
    assert [t.points for t in absorbed.lots] == [1] and merged.points_moved == 1
    mine, theirs = merge(cmd.MergeMembers("m1", "m2"), target, source, ctx())
    absorbed, merged = mine[0], theirs[0]
    assert isinstance(absorbed, ev.MemberAbsorbed) and isinstance(merged, ev.MemberMerged)
    assert (absorbed.reason, merged.reason) == (None, None)


def test_a_transfer_beyond_the_month_is_refused_with_the_rules_message_and_records_what_was_given() -> None:
    owner, giver = household("m1", "m2", points=20_000)
    out, into = transfer(cmd.TransferPoints("m2", "m1", "T1", 6_000), giver, owner, ctx())
    fold(giver, out)
    fold(owner, into)
    given = out[0]
    assert isinstance(given, ev.PointsTransferredOut) and given.given_in_month == 6_000
    out, _ = transfer(cmd.TransferPoints("m2", "m1", "T2", 1_000), giver, owner, ctx())
    assert isinstance(out[0], ev.PointsTransferredOut) and out[0].given_in_month == 7_000
    r = raised(Refusal, transfer, cmd.TransferPoints("m2", "m1", "T3", 4_001), giver, owner, ctx())
    assert (r.reason, r.message) == (
        "TRANSFER_LIMIT_REACHED",
        "at most 10000 points a month per giver: 6000 given, 4000 left",
    )


def test_a_receiver_in_arrears_repays_them_from_what_it_receives() -> None:
    owner, giver = household("m1", "m2", points=500)
    owner.arrears = 300  # what an earlier take-back could not take
    _, into = transfer(cmd.TransferPoints("m2", "m1", "T1", 200), giver, owner, ctx())
    received = into[0]
    assert isinstance(received, ev.PointsTransferredIn)
    assert received.arrears_repaid == 200 and [t.arrears_repaid for t in received.lots] == [200]
