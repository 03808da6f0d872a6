"""Paid membership: purchase, renewal, cancellation in the cooling-off period, lapse, the parenting card."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import events as ev
from ledger.domain.commands import CancelMembership, ConsumeEntitlement, Profile, PurchaseMembership
from ledger.domain.decide import Context, decide, memberships, tick
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import Entitlement, MemberState
from policies import PolicyHistory, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
POLICY = little_sprout()
HISTORY = PolicyHistory.starting_with(POLICY, datetime(2020, 1, 1, tzinfo=SH))
PRICE = 19900
CARD = ("free_delivery", "parenting_consultations", "early_education_sessions")


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def context(now: datetime) -> Context:
    return Context(now=now, at=now, policies=HISTORY, profile=Profile())


def enrolled(at: datetime) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    return fold(state, [ev.MemberEnrolled(at=at, member_id="m1", identities=(), tier="regular", policy_version=1)])


def run(state: MemberState, command: Any, now: datetime) -> list[ev.MemberEvent]:
    """What the write path does: catch up time, decide, apply."""
    fold(state, tick(state, context(now)))
    events = decide(command, state, context(now))
    fold(state, events)
    return events


def advance(state: MemberState, now: datetime) -> list[ev.MemberEvent]:
    events = tick(state, context(now))
    fold(state, events)
    return events


def buy(state: MemberState, membership_id: str, now: datetime, paid: int = PRICE) -> list[ev.MemberEvent]:
    return run(state, PurchaseMembership(member_id="m1", membership_id=membership_id, plan="black_gold", paid_fen=paid), now)


def use(state: MemberState, entitlement_id: str, now: datetime, quantity: int = 1) -> list[ev.MemberEvent]:
    command = ConsumeEntitlement(
        member_id="m1", entitlement_id=entitlement_id, order_id=f"O-{state.version + 1}", store_id="S-1", quantity=quantity
    )
    return run(state, command, now)


def of_type(events: list[ev.MemberEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def card(state: MemberState, membership_id: str, benefit: str) -> Entitlement:
    [ent] = [e for e in state.entitlements.values() if e.source == f"membership:{membership_id}:{benefit}"]
    return ent


# -- purchase -----------------------------------------------------------------------------------------------------


def test_purchase_starts_a_term_and_grants_the_card() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    events = buy(state, "BG-1", sh(2026, 3, 10, 14))
    [bought] = of_type(events, ev.MembershipPurchased)
    assert bought.term_start == sh(2026, 3, 10, 14)
    assert bought.term_end == sh(2027, 3, 10, 14)
    assert bought.price_fen == PRICE and bought.renewal_of is None
    grants = {e.benefit: e for e in of_type(events, ev.EntitlementGranted)}
    assert set(grants) == set(CARD)
    assert grants["free_delivery"].valid_until == sh(2027, 3, 10, 14)  # the term
    assert grants["free_delivery"].quota_total is None
    consultations = grants["parenting_consultations"]
    assert (consultations.quota_total, consultations.quota_per_month) == (12, 3)
    assert grants["early_education_sessions"].quota_total == 4
    assert all(e.source == f"membership:BG-1:{e.benefit}" for e in grants.values())
    assert len({e.entitlement_id for e in grants.values()}) == 3
    assert all(e.entitlement_id.startswith("m1/") for e in grants.values())
    assert state.active_plans(sh(2026, 3, 11)) == ("black_gold",)
    assert state.memberships["BG-1"].benefits_granted


def test_purchase_refusals() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    with pytest.raises(InvalidCommand) as wrong_price:
        buy(state, "BG-1", sh(2026, 3, 10, 14), paid=9900)
    assert wrong_price.value.field == "paid_fen"
    assert "19900 fen" in wrong_price.value.message
    with pytest.raises(InvalidCommand) as invalid:
        run(state, PurchaseMembership(member_id="m1", membership_id="X", plan="silver_card", paid_fen=PRICE), sh(2026, 3, 10))
    assert invalid.value.field == "plan"
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    with pytest.raises(Refusal) as refused:
        buy(state, "BG-1", sh(2026, 3, 11, 14))
    assert refused.value.reason == "MEMBERSHIP_EXISTS"


def test_monthly_coupon_on_the_first_of_each_month_of_the_term() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    events = advance(state, sh(2027, 6, 2))
    coupons = [e for e in of_type(events, ev.EntitlementGranted) if e.benefit == "black_gold_monthly_coupon"]
    assert [e.at for e in coupons] == [sh(2026, m, 1) for m in range(4, 13)] + [sh(2027, m, 1) for m in (1, 2, 3)]
    assert all(c.value_fen == 2000 for c in coupons)
    assert coupons[0].source == "schedule:membership_monthly:black_gold_monthly_coupon:2026-04-01"


# -- renewal and lapse ----------------------------------------------------------------------------------------------


def test_renewal_extends_the_term_and_resets_the_card_on_its_anniversary() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    first = card(state, "BG-1", "parenting_consultations")

    events = buy(state, "BG-2", sh(2026, 12, 1, 11))
    [renewal] = of_type(events, ev.MembershipPurchased)
    assert renewal.renewal_of == "BG-1"
    assert (renewal.term_start, renewal.term_end) == (sh(2027, 3, 10, 14), sh(2028, 3, 10, 14))
    assert of_type(events, ev.EntitlementGranted) == []  # the renewal's card comes when its term starts
    assert memberships.next_due(state, context(sh(2026, 12, 1, 11))) == sh(2027, 3, 10, 14)

    events = advance(state, sh(2027, 3, 10, 14))
    assert [e.membership_id for e in of_type(events, ev.MembershipLapsed)] == ["BG-1"]
    grants = of_type(events, ev.EntitlementGranted)
    assert {e.benefit for e in grants if e.source.startswith("membership:BG-2:")} == set(CARD)
    assert all(e.at == sh(2027, 3, 10, 14) for e in grants if e.source.startswith("membership:BG-2:"))
    second = card(state, "BG-2", "parenting_consultations")
    assert second.entitlement_id != first.entitlement_id and second.used_total == 0
    assert card(state, "BG-2", "free_delivery").valid_until == sh(2028, 3, 10, 14)
    assert state.active_plans(sh(2027, 3, 10, 15)) == ("black_gold",)
    # No gap in the monthly coupon across the renewal.
    events = advance(state, sh(2027, 4, 2))
    assert [e.benefit for e in of_type(events, ev.EntitlementGranted)].count("black_gold_monthly_coupon") == 1


def test_lapse_at_term_end() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    delivery = card(state, "BG-1", "free_delivery")
    assert of_type(advance(state, sh(2027, 3, 10, 13, 59)), ev.MembershipLapsed) == []
    events = advance(state, sh(2027, 3, 10, 14))
    [lapsed] = of_type(events, ev.MembershipLapsed)
    assert lapsed.at == sh(2027, 3, 10, 14)
    assert state.memberships["BG-1"].status == "lapsed"
    assert state.active_plans(sh(2027, 3, 10, 14)) == ()
    assert memberships.next_due(state, context(sh(2027, 3, 11))) is None
    with pytest.raises(Refusal) as refused:
        use(state, delivery.entitlement_id, sh(2027, 3, 11))
    assert refused.value.reason == "ENTITLEMENT_EXPIRED"
    # No monthly coupon after the term.
    events = advance(state, sh(2027, 5, 2))
    assert "black_gold_monthly_coupon" not in [e.benefit for e in of_type(events, ev.EntitlementGranted)]


# -- cancellation -------------------------------------------------------------------------------------------------


def test_cancel_within_cooling_off_refunds_and_revokes_what_remains() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 28, 14))
    consultations = card(state, "BG-1", "parenting_consultations")
    use(state, consultations.entitlement_id, sh(2026, 3, 29, 10))  # partly used
    [coupon] = [e for e in of_type(advance(state, sh(2026, 4, 1, 8)), ev.EntitlementGranted)
                if e.benefit == "black_gold_monthly_coupon"]

    events = run(state, CancelMembership(member_id="m1", membership_id="BG-1", reason="changed mind"), sh(2026, 4, 4, 13))
    [cancelled] = of_type(events, ev.MembershipCancelled)
    assert cancelled.refund_fen == PRICE and cancelled.reason == "changed mind"
    revoked = {e.entitlement_id for e in of_type(events, ev.EntitlementRevoked)}
    expected = {card(state, "BG-1", b).entitlement_id for b in CARD} | {coupon.entitlement_id}
    assert revoked == expected
    assert all(e.reason == "membership_cancelled" for e in of_type(events, ev.EntitlementRevoked))
    assert state.memberships["BG-1"].status == "cancelled"
    assert state.active_plans(sh(2026, 4, 5)) == ()
    # What was used stays used; what remains is gone.
    assert state.entitlements[consultations.entitlement_id].used_total == 1
    with pytest.raises(Refusal) as refused:
        use(state, consultations.entitlement_id, sh(2026, 4, 5))
    assert refused.value.reason == "ENTITLEMENT_REVOKED"
    assert memberships.next_due(state, context(sh(2026, 4, 5))) is None


def test_cancel_after_cooling_off_is_refused() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    with pytest.raises(Refusal) as refused:
        run(state, CancelMembership(member_id="m1", membership_id="BG-1", reason="late"), sh(2026, 3, 17, 14))
    assert refused.value.reason == "COOLING_OFF_ENDED"
    assert refused.value.metadata["cooling_off_days"] == "7"
    assert datetime.fromisoformat(refused.value.metadata["purchased_at"]) == sh(2026, 3, 10, 14)
    # One minute earlier it is still within the 7 days.
    events = decide(CancelMembership(member_id="m1", membership_id="BG-1", reason="ok"), state, context(sh(2026, 3, 17, 13, 59)))
    assert of_type(events, ev.MembershipCancelled)[0].refund_fen == PRICE


def test_cancel_unknown_or_inactive() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    with pytest.raises(NotFound):
        run(state, CancelMembership(member_id="m1", membership_id="nope", reason="x"), sh(2026, 3, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    run(state, CancelMembership(member_id="m1", membership_id="BG-1", reason="x"), sh(2026, 3, 11))
    with pytest.raises(Refusal) as refused:
        run(state, CancelMembership(member_id="m1", membership_id="BG-1", reason="x"), sh(2026, 3, 12))
    assert refused.value.reason == "MEMBERSHIP_NOT_ACTIVE"
    assert refused.value.metadata == {"membership_id": "BG-1", "status": "CANCELLED"}


# -- the parenting card -------------------------------------------------------------------------------------------


def test_parenting_card_12_a_year_at_most_3_a_month() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    consultations = card(state, "BG-1", "parenting_consultations").entitlement_id
    use(state, consultations, sh(2026, 3, 11, 10), quantity=2)
    use(state, consultations, sh(2026, 3, 31, 23, 0))
    with pytest.raises(Refusal) as refused:
        use(state, consultations, sh(2026, 3, 31, 23, 30))
    assert refused.value.reason == "QUOTA_EXHAUSTED"
    assert refused.value.metadata["entitlement_id"] == consultations
    assert refused.value.metadata["period"] == "MONTH"
    assert (refused.value.metadata["limit"], refused.value.metadata["used"]) == ("3", "3")
    assert datetime.fromisoformat(refused.value.metadata["resets_at"]) == sh(2026, 4, 1)

    # The month limit resets on the 1st (local): three more in April, May and June.
    for month in (4, 5, 6):
        use(state, consultations, sh(2026, month, 1, 0, 5), quantity=3)
    with pytest.raises(Refusal) as refused:
        use(state, consultations, sh(2026, 7, 1, 10))
    assert refused.value.reason == "QUOTA_EXHAUSTED"
    assert refused.value.metadata == {
        "entitlement_id": consultations, "period": "TOTAL", "limit": "12", "used": "12", "requested": "1"
    }


def test_early_education_sessions_4_a_year() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 10, 14))
    sessions = card(state, "BG-1", "early_education_sessions").entitlement_id
    use(state, sessions, sh(2026, 3, 11, 10), quantity=3)
    with pytest.raises(Refusal) as refused:
        use(state, sessions, sh(2026, 3, 12, 10), quantity=2)
    assert refused.value.metadata == {
        "entitlement_id": sessions, "period": "TOTAL", "limit": "4", "used": "3", "requested": "2"
    }
    use(state, sessions, sh(2026, 3, 12, 10))


def test_lapse_revokes_monthly_coupons_only_when_no_renewal_carries_on() -> None:
    document = POLICY.model_dump(mode="json")
    document["benefits"]["black_gold_monthly_coupon"]["revoke_on"] = ["membership_cancelled", "membership_lapsed"]
    history = PolicyHistory.starting_with(policy_from_data(document), datetime(2020, 1, 1, tzinfo=SH))

    def lapse(renew: bool) -> list[ev.EntitlementRevoked]:
        state = enrolled(sh(2026, 1, 5, 10))
        ctx = Context(now=sh(2026, 3, 10, 14), at=sh(2026, 3, 10, 14), policies=history)
        command = PurchaseMembership(member_id="m1", membership_id="BG-1", plan="black_gold", paid_fen=PRICE)
        fold(state, decide(command, state, ctx))
        fold(state, tick(state, ctx.for_time(sh(2027, 3, 1, 1))))
        if renew:
            command = PurchaseMembership(member_id="m1", membership_id="BG-2", plan="black_gold", paid_fen=PRICE)
            fold(state, decide(command, state, ctx.for_time(sh(2027, 3, 1, 1))))
        events = tick(state, ctx.for_time(sh(2027, 3, 10, 14)))
        assert [e.membership_id for e in of_type(events, ev.MembershipLapsed)] == ["BG-1"]
        return of_type(events, ev.EntitlementRevoked)

    revoked = lapse(renew=False)
    # The coupons of the last 365 days that are still unused: April 2026 to March 2027.
    assert len(revoked) == 12 and all(e.reason == "membership_lapsed" for e in revoked)
    assert lapse(renew=True) == []


def test_a_renewal_whose_id_contains_a_colon_gets_its_card_once_when_its_term_starts() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG:2026", sh(2026, 3, 10, 14))
    assert state.memberships["BG:2026"].benefits_granted
    assert advance(state, sh(2026, 3, 10, 15)) == []  # the new term's card is not granted a second time
    buy(state, "BG:2027", sh(2026, 12, 1, 11))
    events = advance(state, sh(2027, 3, 10, 14))
    grants = [e for e in of_type(events, ev.EntitlementGranted) if e.source.startswith("membership:BG:2027:")]
    assert sorted(e.benefit for e in grants) == sorted(CARD)
    assert state.memberships["BG:2027"].benefits_granted
    assert memberships.next_due(state, context(sh(2027, 3, 10, 14))) == sh(2028, 3, 10, 14)


def test_cancelling_a_renewal_revokes_the_monthly_coupon_granted_the_instant_its_term_started() -> None:
    state = enrolled(sh(2026, 1, 5, 10))
    buy(state, "BG-1", sh(2026, 3, 1))  # its term ends at midnight on 1 March 2027
    buy(state, "BG-2", sh(2027, 2, 25, 10))  # the renewal's term starts then
    events = advance(state, sh(2027, 3, 1))
    [coupon] = [e for e in of_type(events, ev.EntitlementGranted) if e.benefit == "black_gold_monthly_coupon"]
    assert coupon.at == state.memberships["BG-2"].term_start == sh(2027, 3, 1)
    events = run(state, CancelMembership(member_id="m1", membership_id="BG-2", reason="r"), sh(2027, 3, 3))
    assert coupon.entitlement_id in {e.entitlement_id for e in of_type(events, ev.EntitlementRevoked)}


def silver_beside_black_gold(silver_id: str, edit: Any) -> tuple[MemberState, Context]:
    """A member holding a silver card (a copy of Black-gold at 99 CNY, the policy then changed by ``edit``),
    bought on 10 March 2026 as ``silver_id``, and Black-gold "BG-1" bought on 28 March."""
    document = POLICY.model_dump(mode="json")
    document["memberships"]["silver_card"] = {**document["memberships"]["black_gold"], "price_fen": 9900}
    edit(document)
    history = PolicyHistory.starting_with(policy_from_data(document), datetime(2020, 1, 1, tzinfo=SH))
    state = enrolled(sh(2026, 1, 5, 10))
    ctx = Context(now=sh(2026, 3, 10), at=sh(2026, 3, 10), policies=history)
    silver = PurchaseMembership(member_id="m1", membership_id=silver_id, plan="silver_card", paid_fen=9900)
    fold(state, decide(silver, state, ctx))
    black_gold = PurchaseMembership(member_id="m1", membership_id="BG-1", plan="black_gold", paid_fen=PRICE)
    fold(state, decide(black_gold, state, ctx.for_time(sh(2026, 3, 28))))
    return state, ctx


def test_cancelling_one_plan_leaves_the_monthly_coupons_of_another_plan() -> None:
    def silver_monthly_coupon(document: dict[str, Any]) -> None:
        document["benefits"]["silver_monthly_coupon"] = document["benefits"]["black_gold_monthly_coupon"]
        document["grants"].append(
            {"benefit": "silver_monthly_coupon", "schedule": "membership_monthly", "plan": "silver_card"}
        )

    state, ctx = silver_beside_black_gold("SC-1", silver_monthly_coupon)
    granted = tick(state, ctx.for_time(sh(2026, 4, 1, 8)))
    fold(state, granted)
    first_of_april = [e for e in of_type(granted, ev.EntitlementGranted) if e.at == sh(2026, 4, 1)]
    coupons = {e.benefit: e.entitlement_id for e in first_of_april}
    assert set(coupons) == {"black_gold_monthly_coupon", "silver_monthly_coupon"}
    cancel = CancelMembership(member_id="m1", membership_id="BG-1", reason="r")
    cancelled = decide(cancel, state, ctx.for_time(sh(2026, 4, 2)))
    revoked = {e.entitlement_id for e in of_type(cancelled, ev.EntitlementRevoked)}
    assert coupons["black_gold_monthly_coupon"] in revoked
    assert coupons["silver_monthly_coupon"] not in revoked


def test_cancelling_a_card_leaves_the_own_grants_of_a_card_whose_id_begins_with_its_id() -> None:
    """A card's own grants are those whose source is exactly ``membership:{id}:{benefit}``: cancelling "BG-1"
    revokes its own card, not that of "BG-1:silver" (whose sources also begin with "membership:BG-1:")."""

    def silver_card_grants(document: dict[str, Any]) -> None:
        starts = [g for g in document["grants"] if g["schedule"] == "membership_start"]
        assert starts
        document["grants"] += [{**g, "plan": "silver_card"} for g in starts if g.get("plan") == "black_gold"]

    state, ctx = silver_beside_black_gold("BG-1:silver", silver_card_grants)
    own = {
        mid: {e.entitlement_id for e in state.entitlements.values() if e.source == f"membership:{mid}:{e.benefit}"}
        for mid in ("BG-1", "BG-1:silver")
    }
    assert own["BG-1"] and own["BG-1:silver"]
    cancel = CancelMembership(member_id="m1", membership_id="BG-1", reason="r")
    cancelled = decide(cancel, state, ctx.for_time(sh(2026, 4, 2)))
    revoked = {e.entitlement_id for e in of_type(cancelled, ev.EntitlementRevoked)}
    assert own["BG-1"] <= revoked
    assert not own["BG-1:silver"] & revoked
