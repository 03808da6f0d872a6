"""Paid membership plans: lookups and their terms."""

from __future__ import annotations

from datetime import datetime, timedelta

from policies.calendar import add_local_months, in_utc
from policies.errors import UnknownPlan
from policies.model import MembershipPlan, Policy


def membership_plan(policy: Policy, code: str) -> MembershipPlan:
    """The plan ``code``; raises ``UnknownPlan``."""
    plan = policy.memberships.get(code)
    if plan is None:
        raise UnknownPlan(code)
    return plan


def term_end(policy: Policy, plan: str, starts_at: datetime) -> datetime:
    """The end (exclusive) of a term of ``plan`` starting at ``starts_at``: ``term_months`` local months on."""
    return add_local_months(policy, starts_at, membership_plan(policy, plan).term_months)


def cooling_off_end(policy: Policy, plan: str, bought_at: datetime) -> datetime:
    """Until when (exclusive) a purchase of ``plan`` may be cancelled with a refund."""
    return in_utc(bought_at) + timedelta(days=membership_plan(policy, plan).cooling_off_days)
