"""OverrideTier's and PurchaseMembership's refusals exactly as the caller receives them, and which running term
a purchase renews."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
LATER = T0 + timedelta(days=30)


def ctx(now: datetime = T0) -> Context:
    return Context(now=now, at=now, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> list[ev.MemberEvent]:
    fold(state, tick(state, ctx(now)))
    events = decide(command, state, ctx(now))
    fold(state, events)
    return events


def raised(kind: type[Exception], state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> Any:
    with pytest.raises(kind) as caught:
        run(state, command, now)
    return caught.value


def member() -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    return state


def override(**changes: Any) -> cmd.OverrideTier:
    fields: dict[str, Any] = {
        "member_id": "m1", "tier": "gold", "kind": "temporary_upgrade", "ends_at": LATER, "reason": "vip",
        "operator_id": "op-1",
    }  # fmt: skip
    return cmd.OverrideTier(**{**fields, **changes})


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"tier": "platinum"}, "tier", "unknown tier 'platinum'; known: regular, silver, gold, diamond"),
        ({"kind": "forever"}, "kind", "must be one of temporary_upgrade, override"),
        ({"ends_at": LATER.replace(tzinfo=None)}, "ends_at", "must carry a time zone"),
        ({"ends_at": T0}, "ends_at", f"must be after {T0.isoformat()}"),
        ({"reason": " "}, "reason", "an override needs a reason"),
        ({"operator_id": ""}, "operator_id", "an override needs the operator who sets it"),
    ],
)
def test_a_malformed_override_is_invalid_naming_the_field(
    changes: dict[str, Any], field: str, message: str
) -> None:
    bad = raised(InvalidCommand, member(), override(**changes))
    assert (bad.field, bad.message) == (field, message)


def test_a_temporary_upgrade_to_the_earned_tier_is_refused() -> None:
    r = raised(Refusal, member(), override(tier="regular"))
    assert (r.reason, r.message) == (
        "NOT_AN_UPGRADE",
        "a temporary upgrade must be above the earned tier regular",
    )
    assert r.metadata == {"tier": "regular", "earned_tier": "regular"}


def buy(membership_id: str, plan: str = "black_gold", paid: int = 19_900) -> cmd.PurchaseMembership:
    return cmd.PurchaseMembership("m1", membership_id, plan, paid)


def test_purchase_refusals() -> None:
    state = member()
    bad = raised(InvalidCommand, state, buy("BG-1", "platinum"))
    assert (bad.field, bad.message) == ("plan", "unknown plan 'platinum'; known: black_gold")
    run(state, buy("BG-1"))
    r = raised(Refusal, state, buy("BG-1"))
    assert (r.reason, r.message, r.metadata) == (
        "MEMBERSHIP_EXISTS",
        "membership 'BG-1' already exists",
        {"id": "BG-1"},
    )


def purchased(events: list[ev.MemberEvent]) -> ev.MembershipPurchased:
    bought = events[0]
    assert isinstance(bought, ev.MembershipPurchased)
    return bought


def test_each_renewal_starts_when_the_latest_running_term_ends() -> None:
    state = member()
    first = purchased(run(state, buy("BG-1")))
    second = purchased(run(state, buy("BG-2"), T0 + timedelta(days=1)))
    third = purchased(run(state, buy("BG-3"), T0 + timedelta(days=2)))
    assert (second.renewal_of, second.term_start) == ("BG-1", first.term_end)
    assert (third.renewal_of, third.term_start) == ("BG-2", second.term_end)


def test_a_cancelled_term_is_not_renewed_a_new_one_starts_now() -> None:
    state = member()
    run(state, buy("BG-1"))
    run(state, cmd.CancelMembership("m1", "BG-1", "changed mind"), T0 + timedelta(days=1))
    again = purchased(run(state, buy("BG-2"), T0 + timedelta(days=2)))
    assert (again.renewal_of, again.term_start) == (None, T0 + timedelta(days=2))


def test_an_unknown_plan_is_refused_listing_every_known_plan() -> None:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["memberships"]["gold_card"] = dict(document["memberships"]["black_gold"], name="Gold card")
    h = PolicyHistory.starting_with(policy_from_data(document), datetime(2020, 1, 1, tzinfo=SH))
    state = member()
    with pytest.raises(InvalidCommand) as caught:
        decide(buy("X-1", "platinum"), state, Context(now=T0, at=T0, policies=h))
    assert caught.value.message == "unknown plan 'platinum'; known: black_gold, gold_card"


def test_a_purchase_at_the_instant_a_term_ends_starts_afresh_even_from_a_till_ahead_of_the_ledger() -> None:
    state = member()
    first = purchased(run(state, buy("BG-1")))
    now = first.term_end - timedelta(minutes=1)  # the ledger's clock; the till's is a minute ahead
    fold(state, tick(state, ctx(now)))
    assert state.memberships["BG-1"].status == "active"
    again = purchased(decide(buy("BG-2"), state, Context(now=now, at=first.term_end, policies=HISTORY)))
    assert (again.renewal_of, again.term_start) == (None, first.term_end)


def test_a_purchase_starting_now_numbers_its_start_grants_from_the_first() -> None:
    state = member()
    version = state.version
    events = run(state, buy("BG-1"))
    granted = [e.entitlement_id for e in events if isinstance(e, ev.EntitlementGranted)]
    v = version + 1
    assert granted == [
        f"m1/E-free_delivery-{v}",
        f"m1/E-parenting_consultations-{v}.1",
        f"m1/E-early_education_sessions-{v}.2",
    ]
