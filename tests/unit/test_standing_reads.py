"""GetTierState, ListEntitlements and LookupMember from the read models: the writer's answers, without the writer.

The ``standing`` row holds the facts these answers are computed from (growth entries, referrals, the tier and its
history, overrides, memberships, entitlements with every use), so the same domain functions compute them at the
time asked. The read models answer when nothing is due for the member and the row has reached ``min_version``;
otherwise the writer does, after the due work. These tests count the writer's trips (or stop it) to prove which
path answered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.member_reads import MemberLookup, MemberView
from ledger.application.writer import Peek, StoreUnavailable
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import NotFound
from ledger.domain.queries import balance_figures, current_tier
from ledger.entrypoints.grpc import convert as cv
from ledger.entrypoints.rebuild import rebuild_projections
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


def _line(fen: int, category: str = "toys") -> tuple[OrderLine, ...]:
    return (OrderLine("l1", "SKU-1", category, 1, fen),)


class Trips:
    """Counts the member states asked of the writer (``Peek``)."""

    def __init__(self, w: Wired) -> None:
        self.peeks = 0
        execute = w.app.writer.execute

        def counting(request: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(request, Peek):
                self.peeks += 1
            return execute(request, *args, **kwargs)

        w.app.writer.execute = counting  # type: ignore[method-assign]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def wired(clock: ManualClock) -> Iterator[Wired]:
    """m1 with growth (a late sale, a refund, growth moved in by a merge), a referral, a paid plan with its
    entitlements (some used), a temporary upgrade; on the real clock (the injected manual one)."""
    w = build(Settings(store_url="memory://", reference_program=False), clock)
    app = w.app
    clock.set(START - timedelta(days=30))
    app.create_program(P, "Sandbox", reference_document(), "real", None, "create")
    for m in ("m1", "m2", "m4"):
        app.enroll(P, m, [("card_number", f"C-{m}")], None, f"e-{m}")
    clock.set(START)

    def run(command: cmd.MemberCommand, key: str, at: datetime | None = None) -> None:
        app.execute(cmd.Envelope(P, command, key, at))

    run(cmd.RecordPurchase("m1", "O1", _line(1_500_00), 1_500_00), "p1")
    run(cmd.RecordPurchase("m1", "O2", _line(400_00), 400_00), "p2", START - timedelta(days=3))
    run(cmd.RecordPurchase("m2", "Q1", _line(300_00), 300_00), "q1")
    run(cmd.RecordPurchase("m4", "R1", _line(50_00), 50_00), "r1")
    run(cmd.AwardPoints("m1", "referral", "m4"), "ref1")
    run(cmd.RefundPurchase("m1", "O2", "RF1", (cmd.RefundLine("l1", 100_00),)), "rf1")
    run(cmd.MergeMembers("m1", "m2"), "mg1")
    run(cmd.PurchaseMembership("m1", "MS1", "black_gold", 199_00), "ms1")
    ents = app.view(P, "m1").state.entitlements
    [consultations] = [e for e in ents if "parenting_consultations" in e]
    run(cmd.ConsumeEntitlement("m1", consultations, "O9", "S1", 2), "use1")
    run(
        cmd.OverrideTier("m1", "gold", "temporary_upgrade", START + timedelta(days=3), "vip day", "op1"), "o1"
    )
    yield w
    app.close()


def tier_message(view: MemberView) -> object:
    return cv.tier_state(view.state, view.policy.policy, view.now)


def entitlement_messages(view: MemberView) -> list[object]:
    ordered = sorted(
        view.state.entitlements.values(), key=lambda e: (e.granted_at, e.entitlement_id), reverse=True
    )
    return [cv.entitlement(e, view.policy.policy, view.now) for e in ordered]


def from_writer(w: Wired, member_id: str = "m1") -> tuple[object, list[object]]:
    view = w.app.view(P, member_id)
    return tier_message(view), entitlement_messages(view)


def from_read_models(w: Wired, member_id: str = "m1", min_version: int = 0) -> tuple[object, list[object]]:
    view = w.app.standing_view(P, member_id, min_version)
    return tier_message(view), entitlement_messages(view)


def lookup_from_writer(w: Wired, card: str) -> MemberLookup:
    member_id = w.app.lookup(P, "card_number", card)
    view = w.app.view(P, member_id)
    s = view.state
    return MemberLookup(
        member_id,
        s.merged_into,
        current_tier(s, view.policy.policy, view.now),
        s.enrolled_at,
        balance_figures(s, view.now),
    )


def quiet_moment(w: Wired, clock: ManualClock, at: datetime) -> datetime:
    """``at``, once the writer has applied what fell due by then (a later moment if something is due at it)."""
    clock.set(at)
    w.app.view(P, "m1")
    due = w.backend.reads.standing_now(P, "m1").due_at  # type: ignore[union-attr]
    assert due is None or due > at, "something is still due"
    return at


def test_tier_state_and_entitlements_come_from_the_read_models_without_the_writer(wired: Wired) -> None:
    expected = from_writer(wired)
    tier, ents = expected
    assert tier.tier == "gold" and tier.earned_tier == "silver"  # type: ignore[attr-defined]
    assert tier.growth_in_window == 1_500 + 400 - 100 + 300 + 200  # type: ignore[attr-defined]
    assert tier.referrals_in_window == 1 and len(tier.paid_memberships) == 1  # type: ignore[attr-defined]
    assert any(e.used_this_month == 2 for e in ents)  # type: ignore[attr-defined]
    wired.app.writer.stop()
    assert from_read_models(wired) == expected


def test_lookup_comes_from_the_read_models_without_the_writer(wired: Wired) -> None:
    expected = lookup_from_writer(wired, "C-m1")
    absorbed = lookup_from_writer(wired, "C-m2")  # the merged member's identity resolves to the survivor
    wired.app.writer.stop()
    assert wired.app.look_up(P, "card_number", "C-m1") == expected
    assert wired.app.look_up(P, "card_number", "C-m2") == absorbed == expected
    assert expected.tier == "gold" and expected.merged_into is None and expected.balance.version > 0


def test_no_query_takes_a_trip_through_the_writer_when_nothing_is_due(wired: Wired) -> None:
    trips = Trips(wired)
    wired.app.standing_view(P, "m1")
    wired.app.look_up(P, "card_number", "C-m1")
    wired.app.balance(P, "m1")
    assert trips.peeks == 0


def test_the_use_this_month_and_the_growth_in_the_window_are_counted_at_the_time_asked(
    wired: Wired, clock: ManualClock
) -> None:
    trips = Trips(wired)
    # In April the March uses no longer count this month (the row's facts are the same).
    april = quiet_moment(wired, clock, datetime(2026, 4, 20, 4, 0, tzinfo=UTC))
    expected = from_writer(wired)
    before = trips.peeks
    assert from_read_models(wired) == expected and trips.peeks == before
    assert all(e.used_this_month == 0 for e in expected[1])  # type: ignore[attr-defined]
    assert any(e.used_total == 2 for e in expected[1])  # type: ignore[attr-defined]
    # Past the window, the growth of the sale three days before START (and its refund's) no longer counts.
    later = quiet_moment(wired, clock, START + timedelta(days=365 - 2))
    assert later > april
    expected = from_writer(wired)
    before = trips.peeks
    assert from_read_models(wired) == expected and trips.peeks == before
    assert expected[0].growth_in_window == 1_500 + 300 + 200  # type: ignore[attr-defined]


def test_an_override_that_ended_is_answered_by_the_writer_after_ending_it(
    wired: Wired, clock: ManualClock
) -> None:
    clock.set(START + timedelta(days=3))  # the temporary upgrade ends: due, no scheduler has run
    stale = wired.backend.reads.tier(P, "m1")  # type: ignore[attr-defined]
    assert stale.override_tier == "gold"  # the read model alone still holds the upgrade
    trips = Trips(wired)
    tier, _ = from_read_models(wired)
    assert trips.peeks == 1
    assert tier.tier == "silver" and not tier.HasField("override")  # type: ignore[attr-defined]
    assert (tier, _) == from_writer(wired)


def test_with_work_due_the_writer_must_answer(wired: Wired, clock: ManualClock) -> None:
    clock.set(START + timedelta(days=3))
    wired.app.writer.stop()
    with pytest.raises(StoreUnavailable):
        wired.app.standing_view(P, "m1")
    with pytest.raises(StoreUnavailable):
        wired.app.look_up(P, "card_number", "C-m1")


def test_a_min_version_the_row_has_not_reached_goes_to_the_writer(wired: Wired) -> None:
    version = wired.app.view(P, "m1").state.version
    wired.app.writer.stop()
    assert wired.app.standing_view(P, "m1", min_version=version).state.version == version
    with pytest.raises(StoreUnavailable):
        wired.app.standing_view(P, "m1", min_version=version + 1)


def test_an_erased_member_is_not_found_by_its_identity(wired: Wired) -> None:
    wired.app.lookup(P, "card_number", "C-m4")
    wired.app.execute(cmd.Envelope(P, cmd.EraseMember("m4", "subject request", "DSR-1"), "erase-m4"))
    wired.app.writer.stop()
    with pytest.raises(NotFound):
        wired.app.look_up(P, "card_number", "C-m4")


def test_an_unknown_member_is_not_found(wired: Wired) -> None:
    with pytest.raises(NotFound):
        wired.app.standing_view(P, "nobody")
    with pytest.raises(NotFound):
        wired.app.look_up(P, "card_number", "C-nobody")


def _database(w: Wired) -> str:
    with w.backend.read_connection() as reader:
        [path] = [row[2] for row in reader.execute("PRAGMA database_list") if row[1] == "main"]
    return str(path)


def test_members_without_a_standing_row_are_answered_by_the_writer_until_a_rebuild(wired: Wired) -> None:
    expected = from_writer(wired)
    looked_up = lookup_from_writer(wired, "C-m1")
    with sqlite3.connect(_database(wired)) as conn:  # as a store written before the table existed
        conn.execute("DELETE FROM standing")
    trips = Trips(wired)
    assert from_read_models(wired) == expected and trips.peeks == 1
    assert wired.app.look_up(P, "card_number", "C-m1") == looked_up and trips.peeks == 2
    rebuild_projections(wired.app, wired.backend)
    assert from_read_models(wired) == expected
    assert wired.app.look_up(P, "card_number", "C-m1") == looked_up
    assert trips.peeks == 2


def test_a_store_made_before_the_table_gets_it_when_opened(tmp_path: Any, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    w = build(Settings(store_url=url, reference_program=False), clock)
    w.app.create_program(P, "Sandbox", reference_document(), "real", None, "create")
    w.app.enroll(P, "m1", [("card_number", "C-m1")], None, "e-m1")
    w.app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", _line(900_00), 900_00), "p1"))
    expected = from_writer(w)
    w.app.close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        conn.execute("DROP TABLE standing")
    w = build(Settings(store_url=url, reference_program=False), clock)
    try:
        trips = Trips(w)
        assert from_read_models(w) == expected and trips.peeks == 1  # the new table is empty: the writer
        w.app.execute(cmd.Envelope(P, cmd.AwardPoints("m1", "check_in", ""), "a1"))  # a write fills the row
        expected = from_writer(w)
        before = trips.peeks
        assert from_read_models(w) == expected and trips.peeks == before
    finally:
        w.app.close()
