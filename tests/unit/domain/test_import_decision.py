"""Moving in (pure): an imported member's values are taken as given, fold, expire at their dates, count in the
liability as their own movement; what cannot be imported is refused naming the field."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import EnrollMember, ImportedLot, ImportedMembership, ImportMember, Profile
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.liability import Tally, movement, net, outstanding
from ledger.domain.queries import current_tier
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=SH)


def sh(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=SH)


def ctx(now: datetime = NOW) -> Context:
    return Context(now=now, at=now, policies=HISTORY, profile=Profile())


def row(**fields: object) -> ImportMember:
    base: dict[str, object] = {
        "member_id": "m1",
        "identities": ("card_number:abc",),
        "source": "old.csv",
        "row": 2,
        "tier": "gold",
        "tier_since": sh(2026, 3, 1),
        "lots": (
            ImportedLot(1_000, sh(2026, 1, 10), sh(2027, 1, 15)),  # the policy would say 2027-02-01
            ImportedLot(500, sh(2026, 6, 1), sh(2027, 7, 1)),
        ),
        "growth": 1_200,
        "growth_window_start": sh(2025, 12, 1),
        "growth_window_end": sh(2026, 11, 30),
    }
    base.update(fields)
    return ImportMember(**base)  # type: ignore[arg-type]


def imported(command: ImportMember | None = None) -> tuple[MemberState, ev.MemberImported]:
    state = MemberState(program_id="ls", member_id="m1")
    events = decide(command or row(), state, ctx())
    assert len(events) == 1 and isinstance(events[0], ev.MemberImported)
    fold(state, events)
    return state, events[0]


def test_the_event_records_the_given_values_and_where_they_came_from() -> None:
    state, event = imported()
    assert (event.source, event.row, event.tier, event.tier_since) == ("old.csv", 2, "gold", sh(2026, 3, 1))
    assert [(lot.points, lot.active_at, lot.expires_at, lot.source) for lot in event.lots] == [
        (1_000, sh(2026, 1, 10), sh(2027, 1, 15), "imported"),
        (500, sh(2026, 6, 1), sh(2027, 7, 1), "imported"),
    ]
    assert state.active == 1_500 and state.pending == 0 and state.recount() == (1_500, 0)
    assert state.identities == ["card_number:abc"] and state.enrolled
    # The first review is the first anniversary of the given tier date after the import.
    assert event.next_review_at == sh(2027, 3, 1) == state.next_review_at


def test_a_gold_tier_below_its_threshold_is_not_re_decided_until_the_review() -> None:
    state, _ = imported()
    assert state.tier == "gold" and state.growth_between(sh(2026, 3, 1), NOW) == 1_200  # far below 5,000
    assert current_tier(state, POLICY, NOW) == "gold"
    fold(state, tick(state, ctx(sh(2027, 2, 28))))
    assert state.tier == "gold"  # still Gold the day before the review
    events = tick(state, ctx(sh(2027, 3, 1)))
    reviews = [e for e in events if isinstance(e, ev.TierReviewed)]
    assert reviews and reviews[0].outcome == "notice" and reviews[0].growth_in_window == 1_200


def test_imported_growth_counts_in_the_window_at_the_end_of_its_own() -> None:
    state, _ = imported()
    assert state.growth_between(sh(2026, 11, 29), sh(2026, 11, 30)) == 1_200
    assert state.growth_between(sh(2025, 11, 1), sh(2026, 11, 29)) == 0


def test_an_imported_lot_expires_at_its_given_date_through_due_work() -> None:
    state, _ = imported()
    fold(state, tick(state, ctx(datetime(2027, 1, 14, 23, 59, tzinfo=SH))))
    assert state.active == 1_500
    events = tick(state, ctx(sh(2027, 1, 15)))
    expiries = [e for e in events if isinstance(e, ev.LotExpired)]
    assert [(e.lot_id, e.points, e.at) for e in expiries] == [("import-1", 1_000, sh(2027, 1, 15))]
    fold(state, events)
    assert state.active == 500


def test_the_liability_counts_opening_lots_as_imported() -> None:
    command = row()
    state = MemberState(program_id="ls", member_id="m1")
    (event,) = decide(command, state, ctx())
    moved = movement(state, event)
    assert moved == {"imported": 1_500}
    before = outstanding(state)
    tally = Tally()
    tally.observe(state, event)
    fold(state, [event])
    assert outstanding(state) - before == net(moved) == 1_500


def test_a_paid_term_is_taken_as_given() -> None:
    term = ImportedMembership("card-1", "black_gold", sh(2026, 5, 1), sh(2027, 5, 1), 19_900)
    state, event = imported(row(membership=term))
    assert event.membership is not None and event.membership.term_end == sh(2027, 5, 1)
    assert state.active_plans(NOW) == ("black_gold",)
    lapsed = [e for e in tick(state, ctx(sh(2027, 5, 1))) if isinstance(e, ev.MembershipLapsed)]
    assert [e.at for e in lapsed] == [sh(2027, 5, 1)]


def test_the_entry_tier_has_no_review_and_an_empty_tier_is_the_entry_tier() -> None:
    _, event = imported(row(tier=""))
    assert event.tier == "regular" and event.next_review_at is None


def test_an_existing_member_is_refused() -> None:
    state = MemberState(program_id="ls", member_id="m1")
    fold(state, decide(EnrollMember("m1", ()), state, ctx()))
    with pytest.raises(Refusal) as refused:
        decide(row(), state, ctx())
    assert refused.value.reason == "MEMBER_EXISTS"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tier": "platinum"}, "tier"),
        ({"tier_since": sh(2027, 1, 1)}, "tier_since"),
        ({"lots": (ImportedLot(0, sh(2026, 1, 1), sh(2027, 1, 1)),)}, "lots[0].points"),
        ({"lots": (ImportedLot(5, sh(2026, 1, 1), sh(2026, 11, 30)),)}, "lots[0].expires_at"),
        ({"lots": (ImportedLot(5, sh(2026, 12, 2), sh(2027, 12, 2)),)}, "lots[0].earned_at"),
        ({"growth_window_start": None}, "growth_window_end"),
        ({"growth_window_end": sh(2026, 12, 2)}, "growth_window_end"),
        ({"growth_window_start": sh(2026, 11, 30)}, "growth_window_start"),
        (
            {"membership": ImportedMembership("x", "silver_card", sh(2026, 1, 1), sh(2027, 1, 1))},
            "membership_plan",
        ),
        (
            {"membership": ImportedMembership("x", "black_gold", sh(2025, 1, 1), sh(2026, 1, 1))},
            "membership_end",
        ),
    ],
)
def test_what_cannot_be_imported_is_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        decide(row(**fields), MemberState(program_id="ls", member_id="m1"), ctx())
    assert refused.value.field == field
