"""When points become spendable and when they expire."""

from __future__ import annotations

from datetime import datetime, timedelta

from policies.calendar import add_months, in_utc, local, local_midnight, year_end_exclusive
from policies.model import Policy


def activation_time(policy: Policy, occurred_at: datetime) -> datetime:
    """When purchase points earned at ``occurred_at`` become active: ``pending_days`` days later."""
    return in_utc(occurred_at) + timedelta(days=policy.lots.pending_days)


def lot_expiry(policy: Policy, active_at: datetime) -> datetime:
    """When a lot that became active at ``active_at`` expires (an exclusive bound, UTC).

    ``end_of_month_after``: the end of the local month ``months`` after the activation month (active
    2026-03-10 with 12 months: the end of 2027-03-31, i.e. 2027-04-01 00:00 local).
    ``year_end``: the end of the local year ``years_after`` years after the activation year.
    """
    expiry = policy.lots.expiry
    if expiry.kind == "year_end":
        return year_end_exclusive(policy, active_at, expiry.years_after)
    month = local(policy, active_at).date().replace(day=1)
    return local_midnight(policy, add_months(month, expiry.months + 1))


def relot_expiry(policy: Policy, at: datetime) -> datetime:
    """When points returned at ``at`` into a lot that had already expired expire again."""
    return in_utc(at) + timedelta(days=policy.lots.relot_days)
