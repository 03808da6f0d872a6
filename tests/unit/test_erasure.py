"""Erasing a member's personal data through the whole application on ``memory://``: once per request, the
books unchanged, the profile and the identities gone, and a retried enrolment never bringing the profile back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.application.member_export import member_export
from ledger.application.personal import PersonalProfile
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import NotFound, Refusal
from ledger.domain.streams import member_stream
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"
PROFILE = PersonalProfile(birth_month=3, baby_birth_date="2025-11-02", phone="+8613800138000", consent=True)
IDENTITIES = [("card_number", "C-1"), ("phone_hash", "+8613800138000")]


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    w.app.enroll(P, "m1", IDENTITIES, PROFILE, "enroll-m1")
    lines = (OrderLine("l0", "SKU-1", "toys", 1, 300_00),)
    w.app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O1", lines, 300_00), "p1"))
    yield w
    w.app.close()


def erase(w: Wired, key: str) -> object:
    return w.app.execute(cmd.Envelope(P, cmd.EraseMember("m1", "subject request", "DSR-1"), key))


def erasures(w: Wired) -> list[str]:
    return [s.type for s in w.app.store.read_stream(member_stream(P, "m1")) if s.type == "MemberErased"]


def test_a_retry_of_an_erasure_answers_the_first_result_and_erases_once(wired: Wired) -> None:
    balance_before = wired.app.balance(P, "m1")
    first = wired.app.execute(cmd.Envelope(P, cmd.EraseMember("m1", "subject request", "DSR-1"), "erase-1"))
    log = wired.app.store.read_all(0, 10_000)
    again = wired.app.execute(cmd.Envelope(P, cmd.EraseMember("m1", "subject request", "DSR-1"), "erase-1"))
    assert again.replayed and again.events == first.events
    assert wired.app.store.read_all(0, 10_000) == log
    assert erasures(wired) == ["MemberErased"]
    [erased] = first.events
    assert isinstance(erased, ev.MemberErased) and erased.identities_removed == 2
    after = wired.app.balance(P, "m1")
    assert (after.active, after.pending, after.held) == (balance_before.active, balance_before.pending, 0)


def test_after_an_erasure_the_profile_and_the_identities_are_gone_and_the_books_verify(wired: Wired) -> None:
    assert wired.app.lookup(P, "phone_hash", "+8613800138000") == "m1"
    erase(wired, "erase-1")
    assert wired.app.personal.load(P, "m1") is None
    for kind, value in IDENTITIES:
        with pytest.raises(NotFound):
            wired.app.lookup(P, kind, value)
    report = wired.app.verify_member(P, "m1")
    assert report.ok, report.mismatches
    exported = member_export(wired.app, P, "m1")
    assert (exported["profile_status"], exported["profile"], exported["identities"]) == ("erased", None, [])
    assert exported["erasure"]["request_reference"] == "DSR-1"


def test_erasing_again_with_a_new_request_is_refused_as_already_erased(wired: Wired) -> None:
    erase(wired, "erase-1")
    with pytest.raises(Refusal) as refused:
        erase(wired, "erase-2")
    assert refused.value.reason == "MEMBER_ERASED"
    assert erasures(wired) == ["MemberErased"]


def test_a_retried_enrolment_after_an_erasure_does_not_bring_the_profile_back(wired: Wired) -> None:
    erase(wired, "erase-1")
    again = wired.app.enroll(P, "m1", IDENTITIES, PROFILE, "enroll-m1")
    assert again.replayed
    assert wired.app.personal.load(P, "m1") is None


def test_writes_after_an_erasure_still_work_without_the_profile(wired: Wired) -> None:
    erase(wired, "erase-1")
    lines = (OrderLine("l0", "SKU-1", "toys", 1, 100_00),)
    result = wired.app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", "O2", lines, 100_00), "p2"))
    [recorded] = [e for e in result.events if isinstance(e, ev.PurchaseRecorded)]
    # March is the birth month, but the profile that said so is gone: no birthday x2
    assert recorded.points == 100
    assert wired.app.verify_member(P, "m1").ok


def test_a_new_member_may_enrol_with_the_identities_an_erased_member_had(wired: Wired) -> None:
    erase(wired, "erase-1")
    wired.app.enroll(P, "m2", IDENTITIES, None, "enroll-m2")
    assert wired.app.lookup(P, "phone_hash", "+8613800138000") == "m2"
