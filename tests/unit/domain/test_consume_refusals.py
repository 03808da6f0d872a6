"""Every refusal of ConsumeEntitlement, exactly as the caller receives it: type, reason, message, metadata.

The metadata keys are those of docs/errors.md; times are sent in RFC 3339 (UTC, ``Z``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import ConsumeEntitlement
from ledger.domain.decide import Context, benefits, decide
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
GRANTED = datetime(2026, 3, 10, 10, 0, tzinfo=SH)  # 02:00 UTC


def ctx(now: datetime, at: datetime | None = None) -> Context:
    return Context(now=now, at=at or now, policies=HISTORY)


def holding(benefit: str = "parenting_consultations") -> tuple[MemberState, str]:
    """Member m1 with one entitlement of ``benefit`` granted at GRANTED; returns the state and its id."""
    state = MemberState(program_id="ls", member_id="m1")
    fold(
        state,
        [ev.MemberEnrolled(at=GRANTED, member_id="m1", identities=(), tier="regular", policy_version=1)],
    )
    granted = benefits.grant(state, benefit, GRANTED, ctx(GRANTED), source=f"membership:BG-1:{benefit}")
    fold(state, [granted])
    return state, granted.entitlement_id


def use(
    state: MemberState, entitlement_id: str, now: datetime, quantity: int = 1, at: datetime | None = None
) -> Any:
    command = ConsumeEntitlement("m1", entitlement_id, f"O-{state.version + 1}", "S-1", quantity)
    events = decide(command, state, ctx(now, at))
    fold(state, events)
    return events


def refused(
    state: MemberState, entitlement_id: str, now: datetime, quantity: int = 1, at: datetime | None = None
) -> Refusal:
    with pytest.raises(Refusal) as caught:
        use(state, entitlement_id, now, quantity, at)
    return caught.value


def test_a_quantity_below_one_is_invalid() -> None:
    state, eid = holding()
    with pytest.raises(InvalidCommand) as caught:
        use(state, eid, GRANTED, quantity=0)
    assert (caught.value.field, caught.value.message) == ("quantity", "must be at least 1")


def test_another_members_entitlement_is_not_owned() -> None:
    state, _ = holding()
    r = refused(state, "m2/E-parenting_consultations-1", GRANTED)
    assert r.reason == "ENTITLEMENT_NOT_OWNED"
    assert r.message == "entitlement 'm2/E-parenting_consultations-1' does not belong to member m1"
    assert r.metadata == {"entitlement_id": "m2/E-parenting_consultations-1"}


def test_an_unknown_entitlement_of_the_member_is_not_found() -> None:
    state, _ = holding()
    with pytest.raises(NotFound) as caught:
        use(state, "m1/E-nothing-9", GRANTED)
    assert (caught.value.kind, caught.value.identifier) == ("entitlement", "m1/E-nothing-9")


def test_a_revoked_entitlement_is_refused_with_when_and_why() -> None:
    state, eid = holding()
    revoked_at = GRANTED + timedelta(days=1)
    fold(state, [ev.EntitlementRevoked(at=revoked_at, entitlement_id=eid, reason="membership_cancelled")])
    r = refused(state, eid, revoked_at + timedelta(hours=1))
    assert r.reason == "ENTITLEMENT_REVOKED"
    assert r.message == f"entitlement {eid!r} was revoked (membership_cancelled)"
    assert r.metadata == {
        "entitlement_id": eid,
        "revoked_at": "2026-03-11T02:00:00Z",
        "revoke_reason": "membership_cancelled",
    }


def test_a_revoked_entitlement_with_no_recorded_reason_sends_an_empty_one() -> None:
    state, eid = holding()
    fold(state, [ev.EntitlementRevoked(at=GRANTED, entitlement_id=eid, reason="")])
    r = refused(state, eid, GRANTED + timedelta(hours=1))
    assert r.metadata["revoke_reason"] == ""


def test_a_use_before_the_validity_starts_is_refused_with_its_start() -> None:
    state, eid = holding()
    before = GRANTED - timedelta(minutes=1)  # a till recording a use at an earlier business time
    r = refused(state, eid, GRANTED + timedelta(hours=1), at=before)
    assert r.reason == "ENTITLEMENT_NOT_YET_VALID"
    assert r.message == f"entitlement {eid!r} is valid from {GRANTED.isoformat()}"
    assert r.metadata == {"entitlement_id": eid, "valid_from": "2026-03-10T02:00:00Z"}


def test_a_use_at_the_end_of_the_validity_is_refused_with_its_end() -> None:
    state, eid = holding()
    until = state.entitlements[eid].valid_until
    assert until == GRANTED + timedelta(days=365)
    r = refused(state, eid, until)
    assert r.reason == "ENTITLEMENT_EXPIRED"
    assert r.message == f"entitlement {eid!r} was valid until {until.isoformat()}"
    assert r.metadata == {"entitlement_id": eid, "valid_until": "2027-03-10T02:00:00Z"}
    use(state, eid, until - timedelta(microseconds=1))


def test_the_total_quota_refusal_names_the_limit_the_use_and_the_request() -> None:
    state, eid = holding("early_education_sessions")  # 4 in all, no monthly limit
    use(state, eid, GRANTED, quantity=3)
    r = refused(state, eid, GRANTED + timedelta(hours=1), quantity=2)
    assert r.reason == "QUOTA_EXHAUSTED"
    assert r.message == "Annual parenting card - early-education sessions: 3 of 4 used, 2 requested"
    assert r.metadata == {
        "entitlement_id": eid,
        "period": "TOTAL",
        "limit": "4",
        "used": "3",
        "requested": "2",
    }
    use(state, eid, GRANTED + timedelta(hours=1), quantity=1)


def test_the_monthly_quota_refusal_says_when_the_month_resets() -> None:
    state, eid = holding()  # 12 in all, 3 a month
    use(state, eid, GRANTED, quantity=2)
    r = refused(state, eid, GRANTED + timedelta(hours=1), quantity=2)
    assert r.reason == "QUOTA_EXHAUSTED"
    assert r.message == "Annual parenting card - online consultations: 2 of 3 this month used, 2 requested"
    assert r.metadata == {
        "entitlement_id": eid,
        "period": "MONTH",
        "limit": "3",
        "used": "2",
        "requested": "2",
        "resets_at": "2026-03-31T16:00:00Z",
    }
    use(state, eid, GRANTED + timedelta(hours=1), quantity=1)
    use(state, eid, datetime(2026, 4, 1, tzinfo=SH), quantity=3)
