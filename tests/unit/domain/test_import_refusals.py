"""What an import row cannot bring, refused naming the field with the exact message; the bounds each check
accepts; and the first tier review scheduled after the import."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import EnrollMember, ImportedLot, ImportedMembership, ImportMember
from ledger.domain.decide import Context, decide
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, little_sprout, policy_from_data, review_due

SH = ZoneInfo("Asia/Shanghai")


def _two_plans() -> Policy:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["memberships"]["gold_card"] = dict(document["memberships"]["black_gold"], name="Gold card")
    return policy_from_data(document)


POLICY = _two_plans()  # Little Sprout with a second paid plan
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=SH)
DAY = timedelta(days=1)


def ctx(now: datetime = NOW) -> Context:
    return Context(now=now, at=now, policies=HISTORY)


def row(**fields: Any) -> ImportMember:
    return ImportMember(**{"member_id": "m1", "identities": (), "source": "old.csv", "row": 2, **fields})


def imported(command: ImportMember, now: datetime = NOW) -> ev.MemberImported:
    [event] = decide(command, MemberState("ls", "m1"), ctx(now))
    assert isinstance(event, ev.MemberImported)
    return event


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"tier": "platinum"}, "tier", "unknown tier 'platinum'; known: regular, silver, gold, diamond"),
        ({"tier_since": NOW + DAY}, "tier_since", "is after the time of the import"),
        ({"lots": (ImportedLot(1, NOW, NOW + DAY),) * 1_001}, "lots", "at most 1000 opening lots per member"),
        ({"lots": (ImportedLot(0, NOW, NOW + DAY),)}, "lots[0].points", "must be positive"),
        (
            {"lots": (ImportedLot(5, NOW + DAY, NOW + 2 * DAY),)},
            "lots[0].earned_at",
            "is after the time of the import",
        ),
        ({"lots": (ImportedLot(5, NOW - DAY, NOW - DAY),)}, "lots[0].expires_at", "must be after earned_at"),
        (
            {"lots": (ImportedLot(5, NOW - DAY, NOW),)},
            "lots[0].expires_at",
            "has already passed: an expired lot holds no points",
        ),
        ({"growth": -1}, "growth", "must not be negative"),
        (
            {"growth": 5, "growth_window_start": NOW - DAY},
            "growth_window_end",
            "growth needs its window (growth_window_start and growth_window_end)",
        ),
        (
            {"growth_window_start": NOW - DAY, "growth_window_end": NOW - DAY},
            "growth_window_start",
            "must be before growth_window_end",
        ),
        (
            {"growth_window_start": NOW - DAY, "growth_window_end": NOW + timedelta(microseconds=1)},
            "growth_window_end",
            "is after the time of the import",
        ),
        (
            {"membership": ImportedMembership("BG-1", "platinum", NOW - DAY, NOW + DAY)},
            "membership_plan",
            "unknown plan 'platinum'; known: black_gold, gold_card",
        ),
        (
            {"membership": ImportedMembership("BG-1", "black_gold", NOW + DAY, NOW + DAY)},
            "membership_end",
            "must be after membership_start",
        ),
        (
            {"membership": ImportedMembership("BG-1", "black_gold", NOW - 2 * DAY, NOW)},
            "membership_end",
            "has already passed: only a running or future term is imported",
        ),
        (
            {"membership": ImportedMembership("BG-1", "black_gold", NOW - DAY, NOW + DAY, -1)},
            "membership_paid_fen",
            "must not be negative",
        ),
    ],
)
def test_a_row_that_cannot_be_imported_names_the_field(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        decide(row(**fields), MemberState("ls", "m1"), ctx())
    assert (caught.value.field, caught.value.message) == (field, message)


def test_a_member_already_in_the_program_is_refused() -> None:
    state = MemberState("ls", "m1")
    fold(state, decide(EnrollMember("m1", ()), state, ctx()))
    with pytest.raises(Refusal) as caught:
        decide(row(), state, ctx())
    r = caught.value
    assert (r.reason, r.message, r.metadata) == (
        "MEMBER_EXISTS",
        "member m1 already exists in the program",
        {"id": "m1"},
    )


def test_the_bounds_of_each_check_are_accepted() -> None:
    event = imported(
        row(
            lots=(ImportedLot(1, NOW, NOW + timedelta(microseconds=1)),)
            + (ImportedLot(2, NOW - DAY, NOW + DAY),) * 999
        )
    )
    assert len(event.lots) == 1_000 and event.lots[0].points == 1
    kept = imported(row(growth=5, growth_window_start=NOW - DAY, growth_window_end=NOW))
    assert (kept.growth, kept.growth_window_start, kept.growth_window_end) == (5, NOW - DAY, NOW)
    window = imported(row(growth=0, growth_window_start=NOW - DAY, growth_window_end=NOW))
    assert (window.growth_window_start, window.growth_window_end) == (None, None)  # no growth: no window kept
    term = imported(
        row(membership=ImportedMembership("BG-1", "black_gold", NOW, NOW + timedelta(microseconds=1)))
    )
    assert term.membership is not None and term.membership.term_end == NOW + timedelta(microseconds=1)


def test_the_first_review_is_the_first_anniversary_after_the_import() -> None:
    since = NOW - timedelta(days=800)
    first = review_due(POLICY, since)
    second = review_due(POLICY, first)
    third = review_due(POLICY, second)
    assert first < second <= NOW < third
    assert imported(row(tier="gold", tier_since=since)).next_review_at == third
    # a review falling due at the very time of the import is already past: the next one is scheduled
    assert imported(row(tier="gold", tier_since=since), now=second).next_review_at == third
    assert imported(row(tier_since=since)).next_review_at is None  # the entry tier has no review
