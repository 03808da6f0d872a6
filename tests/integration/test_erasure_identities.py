"""Erasing a member removes the identities that find it, live and after a rebuild, and leaves a merge intact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.application.personal import PersonalProfile
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import NotFound
from ledger.entrypoints.rebuild import rebuild_projections

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROFILE = PersonalProfile(birth_month=5, phone="+8613700000000", consent=True)


@pytest.fixture
def wired(store_url: str) -> Iterator[Wired]:
    w = build(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))
    ledger = w.app
    ledger.create_program("erase", "Erase", reference_document(), "test", START, "c")
    ledger.enroll("erase", "keep", [("card_number", "K-1")], PROFILE, "e1")
    ledger.enroll("erase", "dup", [("card_number", "D-1")], PROFILE, "e2")
    ledger.execute(cmd.Envelope("erase", cmd.MergeMembers("keep", "dup"), "m"))
    yield w
    ledger.close()


def erase(w: Wired, member_id: str) -> ev.MemberErased:
    result = w.app.execute(
        cmd.Envelope("erase", cmd.EraseMember(member_id, "subject request", "DSR-7"), f"x-{member_id}")
    )
    [erased] = result.events
    assert isinstance(erased, ev.MemberErased)
    return erased


def test_erasing_the_survivor_removes_its_own_and_its_absorbed_identities_for_good(wired: Wired) -> None:
    app = wired.app
    assert erase(wired, "keep").identities_removed == 2
    for card in ("K-1", "D-1"):
        with pytest.raises(NotFound):
            app.lookup("erase", "card_number", card)
    assert app.verify_member("erase", "keep").ok
    rebuild_projections(app, wired.backend)
    for card in ("K-1", "D-1"):
        with pytest.raises(NotFound):
            app.lookup("erase", "card_number", card)
    assert app.verify_member("erase", "keep").ok
    assert app.personal.load("erase", "keep") is None
    assert app.personal.load("erase", "dup") == PROFILE  # the other id of the same person: erase it too


def test_erasing_a_member_merged_away_erases_its_profile_and_leaves_the_survivor_alone(wired: Wired) -> None:
    app = wired.app
    assert erase(wired, "dup").identities_removed == 0
    assert app.personal.load("erase", "dup") is None
    assert app.personal.load("erase", "keep") == PROFILE
    assert app.lookup("erase", "card_number", "D-1") == "keep"
    assert app.verify_member("erase", "dup").ok and app.verify_member("erase", "keep").ok
