"""When benefits are granted, until when they can be used, and what they are worth."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from policies.calendar import (
    add_months,
    in_utc,
    local_date,
    local_day_end,
    local_midnight,
    month_end_exclusive,
    require_aware,
)
from policies.errors import UnknownBenefit
from policies.model import CALENDAR_SCHEDULES, Benefit, GrantRule, Policy
from policies.rules.tiers import tier_rank

Moment = tuple[datetime, GrantRule]

_QUARTER_MONTHS = frozenset({1, 4, 7, 10})


def benefit(policy: Policy, code: str) -> Benefit:
    """The benefit ``code``; raises ``UnknownBenefit``."""
    found = policy.benefits.get(code)
    if found is None:
        raise UnknownBenefit(code)
    return found


def grant_moments(policy: Policy, after: datetime, upto: datetime) -> list[Moment]:
    """Every calendar grant falling in ``(after, upto]``, ordered by time (then by the rules' order).

    A calendar grant falls at local midnight of its ``day_of_month``: every month for ``birthday_month``
    (the caller keeps the member's birth month) and ``monthly``, in January, April, July and October for
    ``quarterly``. Tier and plan conditions are the caller's to check.
    """
    require_aware(after)
    require_aware(upto)
    rules = [(i, rule) for i, rule in enumerate(policy.grants) if rule.schedule in CALENDAR_SCHEDULES]
    found: list[tuple[datetime, int, GrantRule]] = []
    if not rules or upto <= after:
        return []
    for month in _months(local_date(policy, after), local_date(policy, upto)):
        for i, rule in rules:
            if rule.schedule == "quarterly" and month.month not in _QUARTER_MONTHS:
                continue
            moment = local_midnight(policy, month.replace(day=rule.day_of_month))
            if after < moment <= upto:
                found.append((moment, i, rule))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(moment, rule) for moment, _, rule in found]


def membership_grant_moments(
    policy: Policy, plan: str, term_start: datetime, term_end: datetime, after: datetime, upto: datetime
) -> list[Moment]:
    """The ``membership_monthly`` grants of ``plan`` falling in ``(after, upto]`` and within the term
    ``[term_start, term_end)``, ordered by time."""
    require_aware(term_start)
    require_aware(term_end)
    rules = [
        (i, rule) for i, rule in enumerate(policy.grants)
        if rule.schedule == "membership_monthly" and rule.plan == plan
    ]
    first, last = max(after, term_start), min(upto, term_end)
    found: list[tuple[datetime, int, GrantRule]] = []
    if not rules or last < first:
        return []
    for month in _months(local_date(policy, first), local_date(policy, last)):
        for i, rule in rules:
            moment = local_midnight(policy, month.replace(day=rule.day_of_month))
            if after < moment <= upto and term_start <= moment < term_end:
                found.append((moment, i, rule))
    found.sort(key=lambda item: (item[0], item[1]))
    return [(moment, rule) for moment, _, rule in found]


def tier_grants(policy: Policy, tier: str) -> list[GrantRule]:
    """The ``on_tier`` grants a member in ``tier`` is entitled to (those whose ``min_tier`` is not above it)."""
    rank = tier_rank(policy, tier)
    return [
        rule for rule in policy.grants
        if rule.schedule == "on_tier" and rule.min_tier is not None and tier_rank(policy, rule.min_tier) <= rank
    ]


def benefit_valid_until(policy: Policy, benefit_code: str, granted_at: datetime, term_end: datetime | None) -> datetime:
    """The end (exclusive, UTC) of a benefit granted at ``granted_at``. ``term_end`` is the end of the paid
    membership term that granted it, needed for ``term`` validity."""
    validity = benefit(policy, benefit_code).validity
    granted_at = in_utc(granted_at)
    if validity.kind == "days":
        return granted_at + timedelta(days=validity.days)
    if validity.kind == "end_of_day":
        return local_day_end(policy, granted_at)
    if validity.kind == "end_of_month":
        return month_end_exclusive(policy, granted_at)
    if term_end is None:
        raise ValueError(f"benefit {benefit_code!r} is valid for a membership term: the term's end is needed")
    return in_utc(term_end)


def benefit_value_fen(policy: Policy, benefit_code: str, tier: str) -> int | None:
    """The benefit's face value for a member in ``tier`` (None: it has no money value)."""
    found = benefit(policy, benefit_code)
    if found.value_by_tier is not None and tier in found.value_by_tier:
        return found.value_by_tier[tier]
    return found.value_fen


def _months(first: date, last: date) -> list[date]:
    """The first day of every month from ``first``'s month to ``last``'s, inclusive."""
    month, end = first.replace(day=1), last.replace(day=1)
    months: list[date] = []
    while month <= end:
        months.append(month)
        month = add_months(month, 1)
    return months
