"""Family accounts: whether a household has a seat left, and whether a member may give points to another.

Pure: the household's size, the points the giver already gave in the month and the points it has are inputs;
the month is the local calendar month of the transfer's business time in the policy's time zone.
"""

from __future__ import annotations

from datetime import datetime

from policies.calendar import local_month_start, month_end_exclusive
from policies.model import Policy
from policies.rules.verdict import Verdict

HOUSEHOLDS_DISABLED = "HOUSEHOLDS_DISABLED"
HOUSEHOLD_FULL = "HOUSEHOLD_FULL"
TRANSFER_LIMIT_REACHED = "TRANSFER_LIMIT_REACHED"
INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"

HouseholdVerdict = Verdict
"""A household rule's answer (:class:`~policies.rules.verdict.Verdict`)."""

ALLOWED = HouseholdVerdict(None)


def transfer_month(policy: Policy, at: datetime) -> tuple[datetime, datetime]:
    """The local calendar month containing ``at`` that the per-giver limit counts in (UTC, half-open)."""
    return local_month_start(policy, at), month_end_exclusive(policy, at)


def judge_seat(policy: Policy, members: int) -> HouseholdVerdict:
    """May one more member join a household that has ``members`` members besides its owner?"""
    rule = policy.household
    if not rule.enabled:
        return HouseholdVerdict(HOUSEHOLDS_DISABLED, "this program has no family accounts")
    if members >= rule.max_members:
        return HouseholdVerdict(
            HOUSEHOLD_FULL,
            f"the household already has its owner and {members} members (at most {rule.max_members})",
            {"max_members": rule.max_members, "members": members},
        )
    return ALLOWED


def judge_transfer(
    policy: Policy, points: int, *, given_this_month: int, available_points: int, at: datetime
) -> HouseholdVerdict:
    """May a member who gave ``given_this_month`` points in the month of ``at`` give ``points`` more, holding
    ``available_points`` it can spend? Limits first (they are the program's), then the points."""
    rule = policy.household
    if not rule.enabled:
        return HouseholdVerdict(HOUSEHOLDS_DISABLED, "this program has no family accounts")
    limits = rule.transfers
    if points > limits.per_transfer_max:
        return HouseholdVerdict(
            TRANSFER_LIMIT_REACHED,
            f"at most {limits.per_transfer_max} points in one transfer",
            {"limit": "per_transfer", "max_points": limits.per_transfer_max, "left": limits.per_transfer_max},
        )
    left = max(limits.per_month_per_giver - given_this_month, 0)
    if points > left:
        start, end = transfer_month(policy, at)
        return HouseholdVerdict(
            TRANSFER_LIMIT_REACHED,
            f"at most {limits.per_month_per_giver} points a month per giver: {given_this_month} given, {left} left",
            {
                "limit": "per_month_per_giver",
                "max_points": limits.per_month_per_giver,
                "given": given_this_month,
                "left": left,
                "month_starts_at": start,
                "month_ends_at": end,
            },
        )
    if points > available_points:
        return HouseholdVerdict(
            INSUFFICIENT_POINTS,
            f"{points} points asked, {available_points} available",
            {"requested": points, "available": available_points},
        )
    return ALLOWED
