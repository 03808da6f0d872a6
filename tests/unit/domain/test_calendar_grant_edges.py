"""Calendar grants at their edges: the value and id of a grant, several grants at one moment, the next grant
moment of members with and without a card, and a policy version taking effect on a grant moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, benefits, decide
from ledger.domain.errors import InvalidCommand
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import Policy, PolicyHistory, PolicyVersion, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)


def sh(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=SH)


def history(policy: Policy | None = None) -> PolicyHistory:
    """A history of its own for each test: the next grant moment is remembered per history."""
    return PolicyHistory.starting_with(policy or little_sprout(), sh(2020, 1, 1))


def ctx(policies: PolicyHistory, now: datetime, birth_month: int | None = None) -> Context:
    return Context(now=now, at=now, policies=policies, profile=cmd.Profile(birth_month=birth_month))


def changed(edit: Any) -> Policy:
    document: dict[str, Any] = little_sprout().model_dump(mode="json")
    edit(document)
    return policy_from_data(document)


def member(policies: PolicyHistory, at: datetime = T0) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    fold(state, decide(cmd.EnrollMember("m1", ()), state, ctx(policies, at)))
    return state


def temporarily_gold(policies: PolicyHistory) -> MemberState:
    """A regular member with a temporary upgrade to gold for 30 days from ``T0``."""
    state = member(policies)
    upgrade = cmd.OverrideTier("m1", "gold", "temporary_upgrade", T0 + timedelta(days=30), "trial", "op")
    fold(state, decide(upgrade, state, ctx(policies, T0)))
    return state


def with_card(state: MemberState, at: datetime = T0) -> MemberState:
    fold(
        state,
        [
            ev.MembershipPurchased(
                at=at, membership_id="BG1", plan="black_gold", price_fen=19900, term_start=at,
                term_end=at.replace(year=at.year + 1), renewal_of=None, policy_version=1,
            )
        ],
    )  # fmt: skip
    return state


def card_coupon_on_the_5th(document: dict[str, Any]) -> None:
    for rule in document["grants"]:
        if rule["benefit"] == "black_gold_monthly_coupon":
            rule["day_of_month"] = 5


def test_a_grant_without_a_tier_is_valued_at_the_members_tier_then_and_named_by_its_stream_version() -> None:
    """The effective tier counts a temporary upgrade; the id is ``{member}/E-{benefit}-{next version}``."""
    policies = history()
    state = temporarily_gold(policies)
    at = T0 + timedelta(hours=1)
    granted = benefits.grant(state, "birthday_coupon", at, ctx(policies, at), source="behaviour:test:1")
    assert granted.value_fen == 12000  # gold's birthday coupon, not regular's 5000
    assert granted.entitlement_id == f"m1/E-birthday_coupon-{state.version + 1}"


def test_granting_an_unknown_benefit_is_an_invalid_command_naming_the_benefit() -> None:
    policies = history()
    state = member(policies)
    with pytest.raises(InvalidCommand) as refused:
        benefits.grant(state, "pony", T0, ctx(policies, T0), source="behaviour:test:1")
    assert (refused.value.field, refused.value.message) == ("benefit", "unknown benefit 'pony'")


def test_two_calendar_grants_at_one_moment_are_two_entitlements_with_their_own_ids() -> None:
    """A gold member born in April gets the birthday and the quarterly coupon on 1 April."""
    policies = history()
    state = temporarily_gold(policies)
    events = benefits.run_due(state, sh(2026, 4, 1), ctx(policies, sh(2026, 4, 1), birth_month=4))
    version, held = state.version + 1, len(state.entitlements)  # the upgrade's perks
    assert [
        (e.benefit, e.entitlement_id, e.value_fen) for e in events if isinstance(e, ev.EntitlementGranted)
    ] == [
        ("birthday_coupon", f"m1/E-birthday_coupon-{version}", 12000),
        ("quarterly_coupon", f"m1/E-quarterly_coupon-{version}.1", None),
    ]
    fold(state, events)
    assert len(state.entitlements) == held + 2


def test_a_rule_repeated_for_one_benefit_grants_it_once_and_the_rules_after_it_still_grant() -> None:
    def repeat_member_day(document: dict[str, Any]) -> None:
        document["grants"].append({"benefit": "member_day_coupon", "schedule": "monthly", "day_of_month": 15})
        document["grants"].append({"benefit": "referral_coupon", "schedule": "monthly", "day_of_month": 15})

    policies = history(changed(repeat_member_day))
    state = member(policies)
    events = benefits.run_due(state, sh(2026, 4, 15), ctx(policies, sh(2026, 4, 15)))
    assert [e.benefit for e in events if isinstance(e, ev.EntitlementGranted)] == [
        "member_day_coupon",
        "referral_coupon",
    ]


def test_the_next_grant_moment_of_a_card_holder_is_not_taken_for_a_member_without_a_card() -> None:
    """The card's coupon falls on the 5th: the holder's next moment is 5 May, the other member's 15 May
    (member day), even when the two have the same cursor and the holder is asked first."""
    policies = history(changed(card_coupon_on_the_5th))
    holder, other = with_card(member(policies)), member(policies)
    holder.grants_through = other.grants_through = sh(2026, 5, 1)
    assert benefits.next_due(holder, ctx(policies, sh(2026, 5, 1))) == sh(2026, 5, 5)
    assert benefits.next_due(other, ctx(policies, sh(2026, 5, 1))) == sh(2026, 5, 15)


def test_a_cancelled_card_brings_no_more_grant_moments() -> None:
    policies = history(changed(card_coupon_on_the_5th))
    state = with_card(member(policies))
    fold(
        state,
        [ev.MembershipCancelled(at=T0 + timedelta(days=1), membership_id="BG1", refund_fen=19900, reason="")],
    )
    state.grants_through = sh(2026, 5, 1)
    assert benefits.next_due(state, ctx(policies, sh(2026, 5, 1))) == sh(2026, 5, 15)


def test_a_grant_moment_at_the_instant_a_policy_version_takes_effect_is_judged_by_that_version() -> None:
    """Version 2 takes effect at 00:00 on 15 May. When it keeps the member day on the 15th, that moment is
    due; when it moves the member day to the 20th, version 1's member day on the 15th is not."""

    def member_day_on_the_20th(document: dict[str, Any]) -> None:
        for rule in document["grants"]:
            if rule["benefit"] == "member_day_coupon":
                rule["day_of_month"] = 20

    for version_2, due in (
        (little_sprout(), sh(2026, 5, 15)),
        (changed(member_day_on_the_20th), sh(2026, 5, 20)),
    ):
        policies = history().with_version(PolicyVersion(2, sh(2026, 5, 15), version_2))
        state = member(policies)
        state.grants_through = sh(2026, 5, 1)
        assert benefits.next_due(state, ctx(policies, sh(2026, 5, 1))) == due


def test_the_next_grant_moment_a_year_ahead_is_looked_for_on_the_programs_calendar(
    far_ahead_host_clock: None,
) -> None:
    """A program at UTC-12 whose only grant is a card's coupon on the 28th; the member's one card term starts
    on 1 February 2027. From 23:30 on 30 January 2026 the look-ahead of 13 months reaches 23:30 on 28 February
    2027 (the 30th clamped) on the program's calendar, so the coupon of 28 February 2027 is the next moment."""

    def only_a_card_coupon_on_the_28th(document: dict[str, Any]) -> None:
        document["timezone"] = "Etc/GMT+12"
        document["grants"] = [
            {"benefit": "black_gold_monthly_coupon", "schedule": "membership_monthly", "day_of_month": 28,
             "plan": "black_gold"},
        ]  # fmt: skip

    zone = ZoneInfo("Etc/GMT+12")
    policies = history(changed(only_a_card_coupon_on_the_28th))
    state = with_card(member(policies), datetime(2027, 2, 1, tzinfo=zone))
    state.grants_through = datetime(2026, 1, 30, 23, 30, tzinfo=zone)
    due = benefits.next_due(state, ctx(policies, datetime(2026, 1, 31, tzinfo=zone)))
    assert due == datetime(2027, 2, 28, tzinfo=zone)


def test_the_remembered_next_grant_moments_are_bounded_and_still_answer_once_full() -> None:
    """The next grant moment is remembered per history and cursor; past 10,000 answers the memory starts afresh
    (it must neither grow without end nor fail), and the answer is the one computed without it."""
    policies = history()
    state = member(policies)
    expected = benefits.next_due(state, ctx(policies, T0))
    assert expected is not None
    memo = benefits._NEXT_DUE_MEMO[id(policies)]
    memo[1].clear()
    memo[1].update({("another cursor", i): None for i in range(10_001)})
    assert benefits.next_due(state, ctx(policies, T0)) == expected
    assert len(benefits._NEXT_DUE_MEMO[id(policies)][1]) == 1
