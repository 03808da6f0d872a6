"""The perks a change of effective tier grants or revokes (``benefits.on_tier_change``): numbered in one decision,
every perk the new tier reaches whatever the order of the rules, each once, and nothing when the tier stays."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.decide.benefits import entitlement_status, on_tier_change
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def ctx(policy: Policy | None = None) -> Context:
    h = PolicyHistory.starting_with(policy or little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
    return Context(now=T0, at=T0, policies=h)


def member(c: Context) -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    fold(state, decide(cmd.EnrollMember("m1", ()), state, c))
    return state


def granted(events: list[ev.MemberEvent]) -> list[tuple[str, str]]:
    return [(e.benefit, e.entitlement_id) for e in events if isinstance(e, ev.EntitlementGranted)]


def with_grants(reorder: Any) -> Policy:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["grants"] = reorder(document["grants"])
    return policy_from_data(document)


def test_the_perks_of_one_change_are_numbered_from_the_first() -> None:
    c = ctx()
    state = member(c)
    v = state.version + 1
    assert granted(on_tier_change(state, "regular", "gold", T0, c)) == [
        ("parenting_consultant", f"m1/E-parenting_consultant-{v}"),
        ("priority_trial", f"m1/E-priority_trial-{v}.1"),
    ]


def test_a_perk_of_a_higher_tier_listed_first_does_not_hide_the_perks_after_it() -> None:
    c = ctx(with_grants(lambda grants: sorted(grants, key=lambda g: g["benefit"] != "family_butler")))
    state = member(c)
    assert [b for b, _ in granted(on_tier_change(state, "regular", "silver", T0, c))] == [
        "parenting_consultant"
    ]


def test_a_perk_named_by_two_rules_is_granted_once() -> None:
    def twice(grants: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return grants + [g for g in grants if g["benefit"] == "parenting_consultant"]

    c = ctx(with_grants(twice))
    state = member(c)
    assert [b for b, _ in granted(on_tier_change(state, "regular", "silver", T0, c))] == [
        "parenting_consultant"
    ]


def test_a_tier_that_stays_grants_and_revokes_nothing() -> None:
    c = ctx()
    state = member(c)
    assert on_tier_change(state, "gold", "gold", T0, c) == []
    line = OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=500_000)
    fold(state, decide(cmd.RecordPurchase("m1", "O1", (line,), 500_000), state, c))
    assert {e.benefit for e in state.entitlements.values()} >= {"parenting_consultant", "priority_trial"}
    later = T0 + timedelta(days=1)
    fold(state, tick(state, Context(now=later, at=later, policies=c.policies)))
    assert on_tier_change(state, "silver", "silver", later, c) == []


def test_an_entitlement_is_revoked_from_the_instant_of_its_revocation() -> None:
    c = ctx()
    state = member(c)
    events = on_tier_change(state, "regular", "gold", T0, c)
    fold(state, events)
    ent = next(e for e in state.entitlements.values() if e.benefit == "priority_trial")
    fold(state, on_tier_change(state, "gold", "regular", T0 + timedelta(hours=1), c))
    assert ent.revoked_at == T0 + timedelta(hours=1)
    assert entitlement_status(ent, T0 + timedelta(hours=1)) == "revoked"
    assert entitlement_status(ent, T0 + timedelta(minutes=59)) == "available"


def test_a_perk_is_valued_at_the_tier_it_is_granted_for_not_the_tier_left() -> None:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["benefits"]["parenting_consultant"]["value_by_tier"] = {
        "regular": 100,
        "silver": 200,
        "gold": 300,
    }
    c = ctx(policy_from_data(document))
    state = member(c)
    values = {
        e.benefit: e.value_fen
        for e in on_tier_change(state, "regular", "gold", T0, c)
        if isinstance(e, ev.EntitlementGranted)
    }
    assert values["parenting_consultant"] == 300
