"""Behaviour points within their cap group's daily and monthly limits."""

from __future__ import annotations

import pytest

from policies import BehaviourAward, CapReached, Policy, UnknownBehaviour, behaviour_award


def test_a_check_in_is_one_point_once_a_day(policy: Policy) -> None:
    assert behaviour_award(policy, "check_in", 0, 17) == BehaviourAward(
        behaviour="check_in", cap_group="check_in", points=1, growth=1, coupon=None, counts_as_referral=False
    )
    assert behaviour_award(policy, "check_in", 1, 18) == CapReached(cap_group="check_in", period="day", limit=1, used=1)


def test_reviews_share_three_a_day_and_twenty_a_month(policy: Policy) -> None:
    award = behaviour_award(policy, "review_with_photos", 2, 19)
    assert isinstance(award, BehaviourAward)
    assert (award.points, award.growth, award.cap_group) == (10, 10, "reviews")
    plain = behaviour_award(policy, "review", 0, 0)
    assert isinstance(plain, BehaviourAward)
    assert (plain.points, plain.growth) == (5, 5)
    assert behaviour_award(policy, "review", 3, 3) == CapReached("reviews", "day", 3, 3)
    assert behaviour_award(policy, "review", 0, 20) == CapReached("reviews", "month", 20, 20)


def test_the_daily_cap_is_named_before_the_monthly_one(policy: Policy) -> None:
    assert behaviour_award(policy, "review_with_photos", 3, 20) == CapReached("reviews", "day", 3, 3)


def test_an_event_and_a_workshop_share_one_a_day(policy: Policy) -> None:
    workshop = behaviour_award(policy, "workshop", 0, 30)
    assert isinstance(workshop, BehaviourAward)
    assert (workshop.points, workshop.cap_group) == (100, "events")
    event = behaviour_award(policy, "offline_event", 0, 0)
    assert isinstance(event, BehaviourAward)
    assert event.points == 50
    assert behaviour_award(policy, "offline_event", 1, 1) == CapReached("events", "day", 1, 1)


def test_a_referral_brings_points_growth_and_a_coupon_ten_a_month(policy: Policy) -> None:
    award = behaviour_award(policy, "referral", 5, 9)
    assert award == BehaviourAward("referral", "referrals", 200, 200, "referral_coupon", True)
    assert behaviour_award(policy, "referral", 0, 10) == CapReached("referrals", "month", 10, 10)


def test_an_unknown_behaviour_is_refused(policy: Policy) -> None:
    with pytest.raises(UnknownBehaviour, match="selfie"):
        behaviour_award(policy, "selfie", 0, 0)
