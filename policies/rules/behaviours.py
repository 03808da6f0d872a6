"""Points for behaviours (check-in, reviews, events, referrals) within their cap group's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policies.errors import UnknownBehaviour
from policies.model import Behaviour, Policy


@dataclass(frozen=True, slots=True)
class BehaviourAward:
    """The award for one behaviour: points (active at once), the same kind of growth, and possibly a coupon."""

    behaviour: str
    cap_group: str
    points: int
    growth: int
    coupon: str | None
    counts_as_referral: bool


@dataclass(frozen=True, slots=True)
class CapReached:
    """A refusal: the cap group has already had ``used`` awards this ``period``, its ``limit``."""

    cap_group: str
    period: Literal["day", "month"]
    limit: int
    used: int


def behaviour_rule(policy: Policy, behaviour: str) -> Behaviour:
    """The behaviour ``behaviour``; raises ``UnknownBehaviour``."""
    rule = policy.behaviours.get(behaviour)
    if rule is None:
        raise UnknownBehaviour(behaviour)
    return rule


def reference_required(policy: Policy, behaviour: str) -> bool:
    """Whether an award of ``behaviour`` must name the thing it rewards (see :attr:`Behaviour.reference`)."""
    rule = behaviour_rule(policy, behaviour)
    if rule.reference is None:
        return behaviour != "check_in"
    return rule.reference == "required"


def behaviour_award(
    policy: Policy, behaviour: str, used_today: int, used_this_month: int
) -> BehaviourAward | CapReached:
    """The award for ``behaviour``, or the cap it would exceed. ``used_today`` and ``used_this_month`` count
    the awards already made in the behaviour's cap group in the current local day and month."""
    rule = behaviour_rule(policy, behaviour)
    group = policy.cap_groups[rule.cap_group]
    if group.per_day is not None and used_today >= group.per_day:
        return CapReached(cap_group=rule.cap_group, period="day", limit=group.per_day, used=used_today)
    if group.per_month is not None and used_this_month >= group.per_month:
        return CapReached(cap_group=rule.cap_group, period="month", limit=group.per_month, used=used_this_month)
    return BehaviourAward(
        behaviour=behaviour,
        cap_group=rule.cap_group,
        points=rule.points,
        growth=rule.growth,
        coupon=rule.coupon,
        counts_as_referral=rule.counts_as_referral,
    )
