"""Family accounts on the in-memory wiring: a household on its owner's stream, joins and leaves written on both
members' streams, transfers taking the giver's soonest-expiring active points into lots that keep their expiry,
the per-transfer and per-month limits in the program's time zone, every refusal, retries, merges, and the
folds (replay, verify, liability) after transfers.

The program runs on a test clock moved by hand (``ManualClock`` and ``advance_clock``): nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.liability import program_liability
from ledger.application.results import CommandResult
from ledger.bootstrap import Settings, Wired, build
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import Conflict, InvalidCommand, NotFound, Refusal
from ledger.domain.streams import member_stream
from policies import OrderLine, dump_policy, little_sprout
from tests.unit.writer_groups import in_one_group

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


def document(**household: Any) -> str:
    policy = little_sprout()
    rule = policy.household
    transfers = household.pop("transfers", None)
    if transfers is not None:
        rule = rule.model_copy(update={"transfers": rule.transfers.model_copy(update=transfers)})
    rule = rule.model_copy(update=household)
    return dump_policy(policy.model_copy(update={"household": rule}))


def wire(doc: str, members: int = 3, at: datetime = START) -> Wired:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(at))
    w.app.create_program(P, "Sandbox", doc, "test", at, "create")
    for i in range(1, members + 1):
        w.app.enroll(P, f"m{i}", [("card_number", f"C-{i}")], None, f"enroll-m{i}")
    return w


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = wire(document(), members=8)
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str, occurred_at: datetime | None = None) -> Any:
    return w.app.execute(cmd.Envelope(P, command, key, occurred_at))


def refused(w: Wired, command: cmd.MemberCommand, key: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        run(w, command, key)
    return caught.value


def credit(w: Wired, points: int, key: str, member: str = "m1") -> None:
    run(w, cmd.AdjustPoints(member, points, "GOODWILL", "opening", "op1"), key)


def household(w: Wired, owner: str = "m1", *members: str) -> None:
    run(w, cmd.CreateHousehold(owner), f"open-{owner}")
    for m in members:
        run(w, cmd.JoinHousehold(m, owner), f"join-{m}")


def transfer(w: Wired, giver: str, to: str, points: int, transfer_id: str, key: str | None = None) -> Any:
    return run(w, cmd.TransferPoints(giver, to, transfer_id, points), key or f"t-{giver}-{transfer_id}")


def state(w: Wired, member: str) -> Any:
    return w.app.view(P, member).state


def events_of(w: Wired, member: str) -> list[ev.MemberEvent]:
    return [ev.decode(s.payload) for s in w.app.store.read_stream(member_stream(P, member))]


# -- the household --------------------------------------------------------------------------------------------


def test_a_join_is_recorded_on_the_owner_and_the_member_and_the_sixth_member_is_refused(wired: Wired) -> None:
    household(wired, "m1", "m2", "m3", "m4", "m5", "m6")
    owner = state(wired, "m1")
    assert owner.household_of == "m1" and owner.household_members == ["m2", "m3", "m4", "m5", "m6"]
    assert state(wired, "m4").household_of == "m1"
    joined = [e for e in events_of(wired, "m1") if isinstance(e, ev.HouseholdMemberJoined)]
    assert [(e.member_id, e.members_after) for e in joined] == [
        ("m2", 1),
        ("m3", 2),
        ("m4", 3),
        ("m5", 4),
        ("m6", 5),
    ]
    assert [e.owner_member_id for e in events_of(wired, "m6") if isinstance(e, ev.JoinedHousehold)] == ["m1"]
    full = refused(wired, cmd.JoinHousehold("m7", "m1"), "join-m7")
    assert full.reason == "HOUSEHOLD_FULL" and full.metadata["max_members"] == "5"
    assert state(wired, "m7").household_of is None  # nothing written on the refused member either


def test_joining_twice_or_a_member_who_owns_no_household_is_refused(wired: Wired) -> None:
    household(wired, "m1", "m2")
    assert refused(wired, cmd.JoinHousehold("m2", "m1"), "again").reason == "ALREADY_IN_HOUSEHOLD"
    run(wired, cmd.CreateHousehold("m3"), "open-m3")
    assert refused(wired, cmd.JoinHousehold("m2", "m3"), "other").reason == "ALREADY_IN_HOUSEHOLD"
    assert refused(wired, cmd.CreateHousehold("m2"), "open-m2").reason == "ALREADY_IN_HOUSEHOLD"
    assert refused(wired, cmd.JoinHousehold("m4", "m5"), "no-household").reason == "NOT_IN_HOUSEHOLD"
    with pytest.raises(NotFound):
        run(wired, cmd.JoinHousehold("m4", "ghost"), "ghost")
    with pytest.raises(InvalidCommand):
        run(wired, cmd.JoinHousehold("m1", "m1"), "self")


def test_a_program_without_family_accounts_refuses_every_household_command() -> None:
    w = wire(document(enabled=False))
    try:
        assert refused(w, cmd.CreateHousehold("m1"), "open").reason == "HOUSEHOLDS_DISABLED"
    finally:
        w.app.close()


def test_leaving_keeps_the_points_and_the_owner_leaves_last(wired: Wired) -> None:
    household(wired, "m1", "m2", "m3")
    credit(wired, 700, "c2", "m2")
    credit(wired, 500, "c1")
    transfer(wired, "m1", "m2", 200, "T1")  # points received in the household are the member's too
    not_empty = refused(wired, cmd.LeaveHousehold("m1"), "owner-leaves")
    assert not_empty.reason == "HOUSEHOLD_NOT_EMPTY" and not_empty.metadata["members"] == "m2,m3"
    before = state(wired, "m2")
    left = run(wired, cmd.LeaveHousehold("m2"), "m2-leaves")
    assert [type(e) for e in left.events] == [ev.LeftHousehold]
    after = state(wired, "m2")
    assert after.household_of is None and after.available == 900
    assert after.lots == before.lots and after.arrears == before.arrears == 0  # every point, every lot kept
    assert state(wired, "m1").household_members == ["m3"] and state(wired, "m1").available == 300
    assert refused(wired, cmd.LeaveHousehold("m2"), "m2-again").reason == "NOT_IN_HOUSEHOLD"
    assert refused(wired, cmd.TransferPoints("m2", "m3", "T2", 10), "t-after").reason == "NOT_IN_HOUSEHOLD"
    run(wired, cmd.AdjustPoints("m2", -900, "CORRECTION", "spends it all", "op1"), "m2-spends")
    assert state(wired, "m2").available == 0
    assert refused(wired, cmd.LeaveHousehold("m1"), "owner-leaves-2").metadata["members"] == "m3"
    run(wired, cmd.LeaveHousehold("m3"), "m3-leaves")
    assert state(wired, "m1").household_members == []
    run(wired, cmd.LeaveHousehold("m1"), "owner-closes")
    assert state(wired, "m1").household_of is None
    assert isinstance(events_of(wired, "m1")[-1], ev.HouseholdClosed)
    run(wired, cmd.CreateHousehold("m1"), "reopen")
    run(wired, cmd.JoinHousehold("m2", "m1"), "rejoin")
    assert state(wired, "m1").household_members == ["m2"]


# -- transfers ------------------------------------------------------------------------------------------------


def test_a_transfer_takes_the_soonest_expiring_lots_and_the_receiver_keeps_their_expiry(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    wired.app.advance_clock(P, START + timedelta(days=40), "clock-1")  # the second lot expires a month later
    credit(wired, 2_000, "c2")
    giver_lots = sorted(state(wired, "m1").lots.values(), key=lambda lot: lot.order_key())
    result = transfer(wired, "m1", "m2", 1_500, "T1")
    (out,) = result.events
    assert isinstance(out, ev.PointsTransferredOut)
    assert [(d.lot_id, d.points) for d in out.debits] == [
        (giver_lots[0].lot_id, 1_000),
        (giver_lots[1].lot_id, 500),
    ]
    (into,) = [e for e in events_of(wired, "m2") if isinstance(e, ev.PointsTransferredIn)]
    assert into.transfer_id == "T1" and into.from_member_id == "m1" and into.points == 1_500
    assert [(t.source_lot_id, t.points, t.expires_at, t.active_at) for t in into.lots] == [
        (giver_lots[0].lot_id, 1_000, giver_lots[0].expires_at, giver_lots[0].active_at),
        (giver_lots[1].lot_id, 500, giver_lots[1].expires_at, giver_lots[1].active_at),
    ]
    # the business time too (it orders lots of equal expiry), on the event and on the receiver's lots
    assert [t.occurred_at for t in into.lots] == [lot.occurred_at for lot in giver_lots]
    assert giver_lots[0].occurred_at == START != into.at
    received = state(wired, "m2").lots
    assert [received[t.lot_id].occurred_at for t in into.lots] == [lot.occurred_at for lot in giver_lots]
    receiver = state(wired, "m2")
    assert receiver.available == 1_500 and state(wired, "m1").available == 1_500
    assert {lot.lot_id: (lot.source, lot.expires_at) for lot in receiver.lots.values()} == {
        t.lot_id: ("transfer", t.expires_at) for t in into.lots
    }
    assert result.balance.active == 1_500
    for m in ("m1", "m2"):
        assert wired.app.verify_member(P, m).ok


def test_the_received_points_expire_with_the_givers_lot(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    transfer(wired, "m1", "m2", 400, "T1")
    expires = state(wired, "m2").lots["T-m1-T1.1"].expires_at
    wired.app.advance_clock(P, expires, "clock-expiry")
    receiver, giver = state(wired, "m2"), state(wired, "m1")
    assert receiver.available == 0 and giver.available == 0
    assert any(isinstance(e, ev.LotExpired) and e.points == 400 for e in events_of(wired, "m2"))


def test_pending_and_held_points_cannot_be_transferred(wired: Wired) -> None:
    household(wired, "m1", "m2")
    run(wired, cmd.RecordPurchase("m1", "O1", (OrderLine("L1", "SKU", "toys", 1, 100_000),), 100_000), "buy")
    assert state(wired, "m1").pending == 1_000
    short = refused(wired, cmd.TransferPoints("m1", "m2", "T1", 1), "t1")
    assert short.reason == "INSUFFICIENT_POINTS" and short.metadata["available"] == "0"
    credit(wired, 500, "c1")
    run(wired, cmd.HoldPoints("m1", "H1", "O2", 300, 100_000), "hold")
    short = refused(wired, cmd.TransferPoints("m1", "m2", "T2", 201), "t2")
    assert short.reason == "INSUFFICIENT_POINTS" and short.metadata["available"] == "200"
    transfer(wired, "m1", "m2", 200, "T3")
    assert state(wired, "m1").held == 300


def test_the_monthly_limit_counts_by_the_local_month_of_the_business_time() -> None:
    # 2026-03-31 23:30 in Asia/Shanghai is 15:30 UTC: still March there.
    late_march = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)
    w = wire(document(), at=late_march)
    try:
        household(w, "m1", "m2")
        credit(w, 20_000, "c1")
        transfer(w, "m1", "m2", 6_000, "T1")
        w.app.advance_clock(P, late_march + timedelta(minutes=20), "clock-1")  # 23:50 local, March
        over = refused(w, cmd.TransferPoints("m1", "m2", "T2", 4_001), "t2")
        assert over.reason == "TRANSFER_LIMIT_REACHED"
        assert over.metadata["limit"] == "per_month_per_giver"
        assert (over.metadata["given"], over.metadata["left"], over.metadata["max_points"]) == (
            "6000",
            "4000",
            "10000",
        )
        transfer(w, "m1", "m2", 4_000, "T2")  # exactly the limit
        assert refused(w, cmd.TransferPoints("m1", "m2", "T3", 1), "t3").metadata["left"] == "0"
        w.app.advance_clock(P, late_march + timedelta(minutes=31), "clock-2")  # 00:01 on 1 April local
        transfer(w, "m1", "m2", 1, "T3", key="t3-april")
        assert state(w, "m2").available == 10_001
        # the receiver's own giving is counted apart
        transfer(w, "m2", "m1", 10_000, "R1")
    finally:
        w.app.close()


def test_the_per_transfer_limit_is_the_policy_versions() -> None:
    w = wire(document(transfers={"per_transfer_max": 3_000}))
    try:
        household(w, "m1", "m2")
        credit(w, 9_000, "c1")
        over = refused(w, cmd.TransferPoints("m1", "m2", "T1", 3_001), "t1")
        assert over.reason == "TRANSFER_LIMIT_REACHED" and over.metadata["limit"] == "per_transfer"
        assert over.metadata["max_points"] == "3000"
        transfer(w, "m1", "m2", 3_000, "T1", key="t1-ok")
    finally:
        w.app.close()


def test_members_of_other_households_or_of_none_cannot_give_or_receive(wired: Wired) -> None:
    household(wired, "m1", "m2")
    run(wired, cmd.CreateHousehold("m3"), "open-m3")
    credit(wired, 1_000, "c1")
    credit(wired, 1_000, "c4", "m4")
    assert refused(wired, cmd.TransferPoints("m1", "m3", "T1", 10), "t1").reason == "NOT_SAME_HOUSEHOLD"
    assert refused(wired, cmd.TransferPoints("m1", "m4", "T2", 10), "t2").reason == "NOT_SAME_HOUSEHOLD"
    assert refused(wired, cmd.TransferPoints("m4", "m1", "T3", 10), "t3").reason == "NOT_IN_HOUSEHOLD"
    with pytest.raises(InvalidCommand):
        run(wired, cmd.TransferPoints("m1", "m1", "T4", 10), "t4")
    with pytest.raises(NotFound):
        run(wired, cmd.TransferPoints("m1", "ghost", "T5", 10), "t5")
    assert state(wired, "m1").available == 1_000


def test_owner_and_members_give_each_other_and_a_transfer_id_is_used_once(wired: Wired) -> None:
    household(wired, "m1", "m2", "m3")
    credit(wired, 1_000, "c2", "m2")
    transfer(wired, "m2", "m3", 100, "T1")
    transfer(wired, "m2", "m1", 100, "T2")
    exists = refused(wired, cmd.TransferPoints("m2", "m1", "T1", 5), "t-other-key")
    assert exists.reason == "TRANSFER_EXISTS"
    assert (state(wired, "m1").available, state(wired, "m2").available, state(wired, "m3").available) == (
        100,
        800,
        100,
    )


def test_a_retry_answers_the_first_transfer_once_and_the_key_with_other_points_is_refused(
    wired: Wired,
) -> None:
    household(wired, "m1", "m2", "m3")
    credit(wired, 1_000, "c1")
    first = transfer(wired, "m1", "m2", 300, "T1", key="k1")
    (into,) = [e for e in events_of(wired, "m2") if isinstance(e, ev.PointsTransferredIn)]
    assert first.extra["received"] == [
        {"lot_id": t.lot_id, "source_lot_id": t.source_lot_id, "points": t.points,
         "arrears_repaid": t.arrears_repaid, "expires_at": t.expires_at.isoformat()}
        for t in into.lots
    ]  # fmt: skip
    log = wired.app.store.read_all(0, 10_000)
    again = transfer(wired, "m1", "m2", 300, "T1", key="k1")
    assert again.replayed and again.events == first.events
    assert again.extra == first.extra  # the receiver's lots are part of the answer a retry gets
    assert wired.app.store.read_all(0, 10_000) == log
    with pytest.raises(Conflict):
        transfer(wired, "m1", "m2", 301, "T1", key="k1")
    with pytest.raises(Conflict):  # another receiver is another request
        transfer(wired, "m1", "m3", 300, "T1", key="k1")
    with pytest.raises(Conflict):  # and so is another transfer id
        transfer(wired, "m1", "m2", 300, "T2", key="k1")
    assert state(wired, "m2").available == 300 and state(wired, "m3").available == 0
    assert state(wired, "m1").available == 700


def test_in_one_group_a_transfer_retry_gets_the_first_answer_with_the_receivers_lots(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    t = cmd.TransferPoints("m1", "m2", "T1", 300)
    requests = [
        cmd.Envelope(P, t, "k1"),
        cmd.Envelope(P, t, "k1"),
        cmd.Envelope(P, cmd.TransferPoints("m1", "m2", "T1", 301), "k1"),
    ]
    answered, again, other = in_one_group(wired, monkeypatch, requests, P, blocker="m8")
    assert isinstance(answered, CommandResult) and isinstance(again, CommandResult)
    assert (again.events, again.version, again.replayed) == (answered.events, answered.version, True)
    assert answered.extra["received"] and again.extra == answered.extra
    assert isinstance(other, Conflict)
    assert (state(wired, "m1").available, state(wired, "m2").available) == (700, 300)


def test_a_receiver_in_arrears_repays_them_first_from_what_it_receives(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    run(wired, cmd.AdjustPoints("m2", -250, "CORRECTION", "owed", "op1", allow_arrears=True), "owe")
    assert state(wired, "m2").arrears == 250
    transfer(wired, "m1", "m2", 400, "T1")
    receiver = state(wired, "m2")
    assert (receiver.arrears, receiver.available) == (0, 150)
    (into,) = [e for e in events_of(wired, "m2") if isinstance(e, ev.PointsTransferredIn)]
    assert into.arrears_repaid == 250 and into.lots[0].arrears_repaid == 250
    assert wired.app.verify_member(P, "m2").ok


def test_a_transfer_moves_no_point_of_the_programs_liability(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    wired.app.advance_clock(P, START + timedelta(hours=1), "clock-1")
    transfer(wired, "m1", "m2", 600, "T1")
    report = program_liability(wired.app, P, None, since=START + timedelta(minutes=30))
    assert report.closing.total == report.opening.total == 1_000  # type: ignore[union-attr]
    moved = report.period()
    assert moved.get("transferred_out") == moved.get("transferred_in") == 600


# -- merges ---------------------------------------------------------------------------------------------------


def test_a_member_in_a_household_leaves_it_before_it_is_merged_away(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 500, "c2", "m2")
    blocked = refused(wired, cmd.MergeMembers("m3", "m2", "duplicate card"), "merge-1")
    assert blocked.reason == "SOURCE_IN_HOUSEHOLD" and blocked.metadata["owner_member_id"] == "m1"
    assert (
        refused(wired, cmd.MergeMembers("m3", "m1", "duplicate card"), "merge-owner").reason
        == "SOURCE_IN_HOUSEHOLD"
    )
    run(wired, cmd.LeaveHousehold("m2"), "leave")
    run(wired, cmd.MergeMembers("m3", "m2", "duplicate card"), "merge-2")
    assert state(wired, "m3").available == 500


def test_a_survivor_in_a_household_keeps_its_seat_and_gives_what_it_absorbed(wired: Wired) -> None:
    household(wired, "m1", "m2")
    credit(wired, 500, "c4", "m4")
    run(wired, cmd.MergeMembers("m2", "m4", "duplicate card"), "merge")
    assert state(wired, "m2").household_of == "m1" and state(wired, "m1").household_members == ["m2"]
    transfer(wired, "m2", "m1", 500, "T1")
    assert state(wired, "m1").available == 500
    with pytest.raises(Refusal) as caught:
        run(wired, cmd.JoinHousehold("m4", "m1"), "join-merged")
    assert caught.value.reason == "MEMBER_MERGED"


def test_balances_as_of_a_date_before_and_after_a_transfer_fold_both_sides(wired: Wired) -> None:
    from ledger.application.as_of import member_as_of

    household(wired, "m1", "m2")
    credit(wired, 1_000, "c1")
    wired.app.advance_clock(P, START + timedelta(days=2), "clock-1")
    transfer(wired, "m1", "m2", 300, "T1")
    wired.app.advance_clock(P, START + timedelta(days=4), "clock-2")
    before, after = START + timedelta(days=1), START + timedelta(days=3)
    assert member_as_of(wired.app, P, "m1", before, None).state.available == 1_000
    assert member_as_of(wired.app, P, "m2", before, None).state.available == 0
    assert member_as_of(wired.app, P, "m1", after, None).state.available == 700
    received = member_as_of(wired.app, P, "m2", after, None).state
    assert received.available == 300 and received.household_of == "m1"
    history = [e.event.type for e in wired.app.replay(P, "m2")]
    assert history[-1] == "PointsTransferredIn" and "JoinedHousehold" in history


def test_a_late_transfer_counts_in_the_month_of_its_business_time() -> None:
    early_april = datetime(2026, 3, 31, 16, 10, tzinfo=UTC)  # 00:10 on 1 April in Asia/Shanghai
    w = wire(document(), at=early_april - timedelta(hours=1))
    try:
        household(w, "m1", "m2")
        credit(w, 30_000, "c1")
        w.app.advance_clock(P, early_april, "clock-1")
        late = early_april - timedelta(minutes=20)  # 23:50 on 31 March, recorded after midnight
        run(w, cmd.TransferPoints("m1", "m2", "T1", 10_000), "t1", occurred_at=late)
        transfer(w, "m1", "m2", 10_000, "T2")  # April's limit is untouched
        with pytest.raises(Refusal) as caught:
            run(w, cmd.TransferPoints("m1", "m2", "T3", 1), "t3-march", occurred_at=late)
        assert caught.value.reason == "TRANSFER_LIMIT_REACHED" and caught.value.metadata["left"] == "0"
    finally:
        w.app.close()


# -- growth toward the owner's tier (off for Little Sprout) ---------------------------------------------------


def sale(w: Wired, member: str, order: str, fen: int) -> None:
    run(w, cmd.RecordPurchase(member, order, (OrderLine("L1", "SKU", "toys", 1, fen),), fen), f"sale-{order}")


def test_growth_stays_personal_in_the_reference_program(wired: Wired) -> None:
    household(wired, "m1", "m2")
    sale(wired, "m2", "O1", 300_000)  # 3,000 growth: Silver for m2
    assert state(wired, "m2").tier == "silver"
    owner = state(wired, "m1")
    assert owner.tier == "regular" and owner.growth == []
    assert not any(isinstance(e, ev.HouseholdGrowthCounted) for e in events_of(wired, "m1"))


def test_with_the_switch_on_a_members_growth_counts_for_the_owners_tier_and_a_refund_takes_it_back() -> None:
    w = wire(document(growth_to_owner=True))
    try:
        household(w, "m1", "m2")
        sale(w, "m3", "O0", 300_000)  # not in the household: counts for m3 alone
        sale(w, "m2", "O1", 150_000)  # 1,500 growth
        owner = state(w, "m1")
        assert owner.tier == "regular" and owner.growth_between(START - timedelta(days=1), START) == 1_500
        sale(w, "m1", "O2", 60_000)  # the owner's own 600: 2,100 in the window, Silver
        assert state(w, "m1").tier == "silver"
        assert state(w, "m2").tier == "regular"  # the member keeps its own growth, and only its own
        counted = [e for e in events_of(w, "m1") if isinstance(e, ev.HouseholdGrowthCounted)]
        assert [(e.from_member_id, e.amount) for e in counted] == [("m2", 1_500)]
        run(w, cmd.RefundPurchase("m2", "O1", "R1"), "refund")
        counted = [e for e in events_of(w, "m1") if isinstance(e, ev.HouseholdGrowthCounted)]
        assert [(e.from_member_id, e.amount) for e in counted] == [("m2", 1_500), ("m2", -1_500)]
        assert state(w, "m1").growth_between(START - timedelta(days=1), START) == 600
        sale(w, "m2", "O3", 500_000)  # 5,000 more: 5,600 for the owner, Gold at once
        assert state(w, "m1").tier == "gold"
        run(w, cmd.LeaveHousehold("m2"), "leave")
        sale(w, "m2", "O4", 900_000)  # after leaving: nothing more counts for the owner
        assert state(w, "m1").growth_between(START - timedelta(days=1), START) == 5_600
        for m in ("m1", "m2"):
            assert w.app.verify_member(P, m).ok
    finally:
        w.app.close()
