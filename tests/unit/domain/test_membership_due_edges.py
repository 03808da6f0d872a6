"""The due work of paid memberships at one instant: terms ending lapse (what they carried revoked once), terms
bought ahead start (their grants numbered across every term starting then), and no other term starts early."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain.commands import CancelMembership, PurchaseMembership
from ledger.domain.decide import Context, decide, memberships, tick
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")


def sh(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SH)


def two_cards() -> Policy:
    """Little Sprout with two more cards, gold (the same monthly coupon and its own free delivery) and silver (its
    own free delivery); the monthly coupon is revoked when a term lapses."""
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    document["memberships"]["gold_card"] = dict(document["memberships"]["black_gold"], name="Gold card")
    document["memberships"]["silver_card"] = dict(document["memberships"]["black_gold"], name="Silver card")
    document["benefits"]["black_gold_monthly_coupon"]["revoke_on"] = [
        "membership_cancelled",
        "membership_lapsed",
    ]
    document["grants"] += [
        {"benefit": "black_gold_monthly_coupon", "schedule": "membership_monthly", "plan": "gold_card"},
        {"benefit": "free_delivery", "schedule": "membership_start", "plan": "gold_card"},
        {"benefit": "free_delivery", "schedule": "membership_start", "plan": "silver_card"},
    ]
    return policy_from_data(document)


HISTORY = PolicyHistory.starting_with(two_cards(), sh(2020, 1, 1))


def ctx(now: datetime) -> Context:
    return Context(now=now, at=now, policies=HISTORY)


def advance(state: MemberState, now: datetime) -> list[ev.MemberEvent]:
    events = tick(state, ctx(now))
    fold(state, events)
    return events


def buy(state: MemberState, membership_id: str, plan: str, now: datetime) -> None:
    advance(state, now)
    fold(state, decide(PurchaseMembership("m1", membership_id, plan, 19900), state, ctx(now)))


def member() -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    fold(
        state,
        [
            ev.MemberEnrolled(
                at=sh(2026, 1, 1), member_id="m1", identities=(), tier="regular", policy_version=1
            )
        ],
    )
    return state


def test_terms_bought_ahead_start_together_with_their_grants_numbered_across_them() -> None:
    state = member()
    buy(state, "A1", "black_gold", sh(2026, 1, 5, 10))
    buy(state, "B1", "gold_card", sh(2026, 1, 5, 10))
    buy(state, "C1", "silver_card", sh(2026, 1, 5, 10))
    buy(state, "A2", "black_gold", sh(2026, 1, 6, 10))  # renewals: each starts when its card's term ends
    buy(state, "B2", "gold_card", sh(2026, 1, 6, 10))
    buy(state, "C2", "silver_card", sh(2026, 1, 6, 10))
    end = sh(2027, 1, 5, 10)
    assert {state.memberships[m].term_start for m in ("A2", "B2", "C2")} == {end}
    before = end - timedelta(microseconds=1)
    advance(state, before)
    version = state.version
    events = memberships.run_due(state, end, ctx(end))
    lapsed = [e.membership_id for e in events if isinstance(e, ev.MembershipLapsed)]
    granted = [(e.entitlement_id, e.source) for e in events if isinstance(e, ev.EntitlementGranted)]
    assert lapsed == ["A1", "B1", "C1"]
    v = version + 1
    assert granted == [
        (f"m1/E-free_delivery-{v}", "membership:A2:free_delivery"),
        (f"m1/E-parenting_consultations-{v}.1", "membership:A2:parenting_consultations"),
        (f"m1/E-early_education_sessions-{v}.2", "membership:A2:early_education_sessions"),
        (f"m1/E-free_delivery-{v}.3", "membership:B2:free_delivery"),
        (f"m1/E-free_delivery-{v}.4", "membership:C2:free_delivery"),
    ]
    assert [type(e) for e in events][:2] == [ev.MembershipLapsed, ev.MembershipLapsed]
    fold(state, events)


def test_a_coupon_two_lapsing_cards_carried_is_revoked_once() -> None:
    state = member()
    buy(state, "A1", "black_gold", sh(2026, 1, 5, 10))
    buy(state, "B1", "gold_card", sh(2026, 1, 5, 10))
    end = sh(2027, 1, 5, 10)
    advance(state, end - timedelta(microseconds=1))
    coupons = {
        e.entitlement_id
        for e in state.entitlements.values()
        if e.benefit == "black_gold_monthly_coupon" and e.valid_until > end
    }
    assert len(coupons) == 12
    events = memberships.run_due(state, end, ctx(end))
    revoked = [e.entitlement_id for e in events if isinstance(e, ev.EntitlementRevoked)]
    assert sorted(revoked) == sorted(coupons)
    fold(state, events)


def test_a_term_bought_ahead_does_not_start_at_another_terms_end() -> None:
    state = member()
    buy(state, "A1", "black_gold", sh(2026, 1, 5, 10))
    buy(state, "B1", "gold_card", sh(2026, 1, 7, 10))
    buy(state, "B2", "gold_card", sh(2026, 1, 8, 10))  # starts 2027-01-07 10:00
    end = sh(2027, 1, 5, 10)
    advance(state, end - timedelta(microseconds=1))
    events = memberships.run_due(state, end, ctx(end))
    assert [e.membership_id for e in events if isinstance(e, ev.MembershipLapsed)] == ["A1"]
    assert not [e for e in events if isinstance(e, ev.EntitlementGranted)]


def term_coupons() -> PolicyHistory:
    """The two-card program with its monthly coupon valid for the membership term that carries it."""
    document: dict[str, Any] = two_cards().model_dump(mode="json")
    document["benefits"]["black_gold_monthly_coupon"]["validity"] = {"kind": "term"}
    return PolicyHistory.starting_with(policy_from_data(document), sh(2020, 1, 1))


def test_a_monthly_grant_valid_for_the_term_ends_with_the_covering_term_of_its_own_plan() -> None:
    h = term_coupons()
    state = member()
    for membership_id, plan, at in (
        ("A1", "black_gold", sh(2026, 1, 5, 10)),
        ("A2", "black_gold", sh(2026, 1, 6, 10)),  # bought ahead: it covers nothing yet
        ("B1", "gold_card", sh(2026, 1, 20, 10)),  # another card, ending later
    ):
        c = Context(now=at, at=at, policies=h)
        fold(state, tick(state, c))
        fold(state, decide(PurchaseMembership("m1", membership_id, plan, 19900), state, c))
    at = sh(2026, 3, 1)
    c = Context(now=at, at=at, policies=h)
    fold(state, tick(state, c))
    coupons = [e for e in state.entitlements.values() if e.benefit == "black_gold_monthly_coupon"]
    assert coupons and {e.valid_until for e in coupons} == {state.memberships["A1"].term_end}


REFERENCE = PolicyHistory.starting_with(little_sprout(), sh(2020, 1, 1))


def test_a_cancellation_revokes_the_terms_benefits_whatever_the_member_held_before() -> None:
    state = member()
    c = Context(now=sh(2026, 1, 20, 10), at=sh(2026, 1, 20, 10), policies=REFERENCE)
    fold(state, tick(state, c))
    earlier = [e.entitlement_id for e in state.entitlements.values()]
    assert earlier  # the member-day coupon of 15 January comes first
    bought = decide(PurchaseMembership("m1", "BG-1", "black_gold", 19900), state, c)
    fold(state, bought)
    own = [e.entitlement_id for e in bought if isinstance(e, ev.EntitlementGranted)]
    later = Context(now=sh(2026, 1, 21, 10), at=sh(2026, 1, 21, 10), policies=REFERENCE)
    fold(state, tick(state, later))
    events = decide(CancelMembership("m1", "BG-1", "changed mind"), state, later)
    revoked = [e.entitlement_id for e in events if isinstance(e, ev.EntitlementRevoked)]
    assert len(own) == 3 and sorted(revoked) == sorted(own)


def test_a_lapse_leaves_the_monthly_coupons_that_are_revoked_only_on_a_cancellation() -> None:
    state = member()
    c = Context(now=sh(2026, 1, 5, 10), at=sh(2026, 1, 5, 10), policies=REFERENCE)
    fold(state, decide(PurchaseMembership("m1", "BG-1", "black_gold", 19900), state, c))
    end = state.memberships["BG-1"].term_end
    fold(state, tick(state, Context(now=end - timedelta(microseconds=1), at=end, policies=REFERENCE)))
    assert any(
        e.benefit == "black_gold_monthly_coupon" and e.valid_until > end for e in state.entitlements.values()
    )
    events = memberships.run_due(state, end, Context(now=end, at=end, policies=REFERENCE))
    assert [type(e) for e in events] == [ev.MembershipLapsed]


def test_cancelling_a_new_term_revokes_its_benefits_not_the_coupons_of_an_earlier_lapsed_term() -> None:
    state = MemberState(program_id="ls", member_id="m1")
    fold(
        state,
        [
            ev.MemberEnrolled(
                at=sh(2025, 1, 1), member_id="m1", identities=(), tier="regular", policy_version=1
            )
        ],
    )

    def at(when: datetime) -> Context:
        c = Context(now=when, at=when, policies=REFERENCE)
        fold(state, tick(state, c))
        return c

    fold(state, decide(PurchaseMembership("m1", "BG-0", "black_gold", 19900), state, at(sh(2025, 1, 5, 10))))
    c = at(sh(2026, 1, 10, 10))  # BG-0 lapsed on 5 January; its monthly coupons are still valid
    old = {e.entitlement_id for e in state.entitlements.values() if e.benefit == "black_gold_monthly_coupon"}
    assert old and all(state.entitlements[i].revoked_at is None for i in old)
    bought = decide(PurchaseMembership("m1", "BG-1", "black_gold", 19900), state, c)
    fold(state, bought)
    own = sorted(e.entitlement_id for e in bought if isinstance(e, ev.EntitlementGranted))
    events = decide(CancelMembership("m1", "BG-1", "changed mind"), state, at(sh(2026, 1, 11, 10)))
    assert sorted(e.entitlement_id for e in events if isinstance(e, ev.EntitlementRevoked)) == own
