"""Benefits: calendar grants, values by tier, validity, consumption with visible limits, ownership."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import ConsumeEntitlement, Profile
from ledger.domain.decide import Context, benefits, decide, tick, tiers
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, PolicyVersion, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def context(
    now: datetime, at: datetime | None = None, *, birth_month: int | None = None, history: PolicyHistory = HISTORY
) -> Context:
    return Context(now=now, at=at or now, policies=history, profile=Profile(birth_month=birth_month))


def enrolled(at: datetime, member_id: str = "m1") -> MemberState:
    state = MemberState(program_id="ls", member_id=member_id)
    return fold(state, [ev.MemberEnrolled(at=at, member_id=member_id, identities=(), tier="regular", policy_version=1)])


def advance(
    state: MemberState, now: datetime, *, birth_month: int | None = None, history: PolicyHistory = HISTORY
) -> list[ev.MemberEvent]:
    events = tick(state, context(now, birth_month=birth_month, history=history))
    fold(state, events)
    return events


def reach(state: MemberState, at: datetime, growth: int) -> None:
    """Growth from a sale at ``at`` and the upgrade it brings."""
    advance(state, at)
    events: list[ev.MemberEvent] = [
        ev.PurchaseRecorded(
            at=at,
            order_id=f"O-{state.version + 1}",
            lines=(),
            order_total_fen=growth * 100,
            points_paid=0,
            tier=state.tier,
            multiplier="1",
            multiplier_rule="tier:regular",
            candidates=(),
            points=0,
            growth=growth,
            lot=None,
            policy_version=1,
        )
    ]
    events += tiers.upgrade(state, context(at), growth=growth, purchase_at=at)
    fold(state, events)


def granted(events: list[ev.MemberEvent], benefit: str | None = None) -> list[ev.EntitlementGranted]:
    return [e for e in events if isinstance(e, ev.EntitlementGranted) and (benefit is None or e.benefit == benefit)]


def consume(state: MemberState, entitlement_id: str, at: datetime, quantity: int = 1, order: str = "") -> list[Any]:
    command = ConsumeEntitlement(
        member_id=state.member_id,
        entitlement_id=entitlement_id,
        order_id=order or f"O-{state.version + 1}",
        store_id="S-1",
        quantity=quantity,
    )
    events = decide(command, state, context(at))
    fold(state, events)
    return events


# -- calendar grants --------------------------------------------------------------------------------------------


def test_birthday_coupon_only_in_the_birth_month() -> None:
    state = enrolled(sh(2026, 1, 10, 10))
    events = advance(state, sh(2026, 2, 28, 23), birth_month=3)
    assert granted(events, "birthday_coupon") == []
    assert [e.at for e in events if isinstance(e, ev.GrantsChecked)] == [sh(2026, 2, 1)]

    events = advance(state, sh(2026, 3, 1), birth_month=3)
    [coupon] = granted(events, "birthday_coupon")
    assert coupon.at == coupon.valid_from == sh(2026, 3, 1)
    assert coupon.value_fen == 5000  # Regular
    assert coupon.quota_total == 1
    assert coupon.valid_until == sh(2027, 3, 1)  # 365 days
    assert coupon.source == "schedule:birthday_month:birthday_coupon:2026-03-01"
    assert coupon.entitlement_id.startswith("m1/E-birthday_coupon-")

    events = advance(state, sh(2027, 2, 28), birth_month=3)
    assert granted(events, "birthday_coupon") == []


def test_no_birthday_coupon_without_a_birth_month() -> None:
    state = enrolled(sh(2026, 1, 10, 10))
    events = advance(state, sh(2026, 12, 31))
    assert len(granted(events, "member_day_coupon")) == 12
    assert granted(events, "birthday_coupon") == []


@pytest.mark.parametrize(
    ("growth", "value"), [(0, 5000), (2000, 8000), (5000, 12000), (10000, 20000)]
)
def test_birthday_coupon_value_by_tier(growth: int, value: int) -> None:
    state = enrolled(sh(2026, 1, 10, 10))
    if growth:
        reach(state, sh(2026, 4, 20, 12), growth)
    [coupon] = granted(advance(state, sh(2026, 5, 1), birth_month=5), "birthday_coupon")
    assert coupon.value_fen == value


def test_member_day_coupon_valid_to_the_end_of_the_15th() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    [coupon] = granted(advance(state, sh(2026, 2, 15, 9)), "member_day_coupon")
    assert coupon.at == sh(2026, 2, 15)
    assert coupon.source == "schedule:monthly:member_day_coupon:2026-02-15"
    assert coupon.valid_until == sh(2026, 2, 16)
    with pytest.raises(Refusal) as refused:
        consume(state.clone(), coupon.entitlement_id, sh(2026, 2, 16))
    assert refused.value.reason == "ENTITLEMENT_EXPIRED"
    assert datetime.fromisoformat(refused.value.metadata["valid_until"]) == sh(2026, 2, 16)
    [used] = consume(state, coupon.entitlement_id, sh(2026, 2, 15, 23, 59))
    assert isinstance(used, ev.EntitlementConsumed) and used.quantity == 1


def test_quarterly_coupon_only_for_gold_and_up() -> None:
    regular = enrolled(sh(2026, 1, 10, 10))
    assert granted(advance(regular, sh(2026, 4, 2)), "quarterly_coupon") == []

    silver = enrolled(sh(2026, 1, 10, 10))
    reach(silver, sh(2026, 2, 1, 12), 2000)
    assert granted(advance(silver, sh(2026, 4, 2)), "quarterly_coupon") == []

    gold = enrolled(sh(2026, 1, 10, 10))
    reach(gold, sh(2026, 2, 1, 12), 5000)
    events = advance(gold, sh(2026, 7, 2))
    assert [e.at for e in granted(events, "quarterly_coupon")] == [sh(2026, 4, 1), sh(2026, 7, 1)]


def test_a_moment_with_nothing_for_the_member_still_moves_the_cursor() -> None:
    state = enrolled(sh(2026, 1, 10, 10))
    ctx = context(sh(2026, 2, 1))
    assert benefits.next_due(state, ctx) == sh(2026, 1, 15)
    advance(state, sh(2026, 1, 31))
    assert benefits.next_due(state, ctx) == sh(2026, 2, 1)
    events = benefits.run_due(state, sh(2026, 2, 1), ctx)
    assert events == [ev.GrantsChecked(at=sh(2026, 2, 1))]
    fold(state, events)
    assert state.grants_through == sh(2026, 2, 1)
    assert benefits.next_due(state, ctx) == sh(2026, 2, 15)


def test_next_grant_follows_the_policy_in_force_at_the_moment() -> None:
    document = POLICY.model_dump(mode="json")
    for rule in document["grants"]:
        if rule["benefit"] == "member_day_coupon":
            rule["day_of_month"] = 20
    history = HISTORY.with_version(PolicyVersion(2, sh(2026, 2, 10), policy_from_data(document)))
    state = enrolled(sh(2026, 1, 20, 10))
    advance(state, sh(2026, 2, 5), history=history)
    assert state.grants_through == sh(2026, 2, 1)
    # Under version 1 the next grant would be the 15th; version 2 is in force from the 10th: the 20th.
    assert benefits.next_due(state, context(sh(2026, 2, 5), history=history)) == sh(2026, 2, 20)
    [coupon] = granted(advance(state, sh(2026, 2, 21), history=history), "member_day_coupon")
    assert coupon.at == sh(2026, 2, 20) and coupon.policy_version == 2


# -- consuming ---------------------------------------------------------------------------------------------------


def member_day_coupon(state: MemberState) -> ev.EntitlementGranted:
    [coupon] = granted(advance(state, sh(2026, 2, 15, 9)), "member_day_coupon")
    return coupon


def test_single_use_coupon_consumed_twice_is_refused_with_the_numbers() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    coupon = member_day_coupon(state)
    consume(state, coupon.entitlement_id, sh(2026, 2, 15, 10))
    with pytest.raises(Refusal) as refused:
        consume(state, coupon.entitlement_id, sh(2026, 2, 15, 11))
    assert refused.value.reason == "QUOTA_EXHAUSTED"
    assert refused.value.metadata == {
        "entitlement_id": coupon.entitlement_id, "period": "TOTAL", "limit": "1", "used": "1", "requested": "1"
    }
    assert benefits.entitlement_status(state.entitlements[coupon.entitlement_id], sh(2026, 2, 15, 12)) == "used_up"


def test_another_members_entitlement_is_not_owned() -> None:
    alice = enrolled(sh(2026, 1, 20, 10), "alice")
    bob = enrolled(sh(2026, 1, 20, 10), "bob")
    coupon = member_day_coupon(alice)
    advance(bob, sh(2026, 2, 15, 9))
    with pytest.raises(Refusal) as refused:
        consume(bob, coupon.entitlement_id, sh(2026, 2, 15, 10))
    assert refused.value.reason == "ENTITLEMENT_NOT_OWNED"
    with pytest.raises(NotFound):
        consume(bob, "bob/E-member_day_coupon-999", sh(2026, 2, 15, 10))


def test_revoked_entitlement_cannot_be_consumed() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    coupon = member_day_coupon(state)
    fold(state, [ev.EntitlementRevoked(at=sh(2026, 2, 15, 9), entitlement_id=coupon.entitlement_id, reason="x")])
    with pytest.raises(Refusal) as refused:
        consume(state, coupon.entitlement_id, sh(2026, 2, 15, 10))
    assert refused.value.reason == "ENTITLEMENT_REVOKED"
    assert benefits.entitlement_status(state.entitlements[coupon.entitlement_id], sh(2026, 2, 15, 10)) == "revoked"


def test_quantity_must_be_positive() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    coupon = member_day_coupon(state)
    with pytest.raises(InvalidCommand) as invalid:
        consume(state, coupon.entitlement_id, sh(2026, 2, 15, 10), quantity=0)
    assert invalid.value.field == "quantity"


def test_status_and_monthly_use_helpers() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    coupon = member_day_coupon(state)
    ent = state.entitlements[coupon.entitlement_id]
    assert benefits.entitlement_status(ent, sh(2026, 2, 15, 10)) == "available"
    assert benefits.entitlement_status(ent, sh(2026, 2, 16)) == "expired"
    consume(state, coupon.entitlement_id, sh(2026, 2, 15, 10))
    assert benefits.used_in_month(ent, POLICY, sh(2026, 2, 28, 23, 59)) == 1
    assert benefits.used_in_month(ent, POLICY, sh(2026, 3, 1)) == 0
    assert benefits.used_in_month(ent, POLICY, sh(2026, 1, 31, 23, 59)) == 0


def test_upgrade_grants_perks_once() -> None:
    state = enrolled(sh(2026, 1, 20, 10))
    reach(state, sh(2026, 2, 1, 12), 2000)
    reach(state, sh(2026, 2, 2, 12), 3000)
    consultants = [e for e in state.entitlements.values() if e.benefit == "parenting_consultant"]
    trials = [e for e in state.entitlements.values() if e.benefit == "priority_trial"]
    assert len(consultants) == 1 and len(trials) == 1
    assert trials[0].source == "tier:gold:priority_trial"
