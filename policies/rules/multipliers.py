"""Which earning multipliers apply to a purchase and how they combine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from fractions import Fraction
from typing import TYPE_CHECKING

from policies.calendar import local
from policies.model import Campaign, Policy
from policies.rules.memberships import membership_plan
from policies.rules.tiers import tier_multiplier

if TYPE_CHECKING:
    from policies.rules.earning import EarningContext

Candidate = tuple[str, Fraction]
"""A multiplier that applies, named by the rule that gives it (``"tier:gold"``, ``"member_day"``)."""


def applicable_multipliers(policy: Policy, ctx: EarningContext) -> list[Candidate]:
    """Every multiplier that applies to a purchase, in a fixed order: the tier's (always), each active paid
    plan's, the member day's, the birthday month's, then each running campaign's in policy order."""
    rules = policy.multipliers
    when = local(policy, ctx.occurred_at)
    candidates: list[Candidate] = [(f"tier:{ctx.tier}", tier_multiplier(policy, ctx.tier))]
    candidates.extend((f"plan:{plan}", membership_plan(policy, plan).multiplier) for plan in ctx.active_plans)
    if rules.member_day is not None and when.day == rules.member_day.day:
        candidates.append(("member_day", rules.member_day.factor))
    if rules.birthday_month is not None and ctx.birth_month == when.month:
        candidates.append(("birthday_month", rules.birthday_month))
    candidates.extend(
        (f"campaign:{campaign.id}", campaign.factor)
        for campaign in rules.campaigns
        if campaign_applies(campaign, ctx)
    )
    return candidates


def campaign_applies(campaign: Campaign, ctx: EarningContext) -> bool:
    """Whether a sale falls in the campaign's window and the member in its audience."""
    if not campaign.starts_at <= ctx.occurred_at < campaign.ends_at:
        return False
    if campaign.audience == "all":
        return True
    if ctx.last_activity_at is None:
        return True
    days = campaign.inactive_days or 0
    return ctx.occurred_at - ctx.last_activity_at >= timedelta(days=days)


def combine_multipliers(policy: Policy, candidates: Sequence[Candidate]) -> tuple[Fraction, str]:
    """The multiplier to apply and the rule that produced it.

    ``highest``: the largest candidate (the first of equals), named as that candidate. ``multiply``: the
    product, named ``"multiply:a*b"``. A result above the cap is the cap, named ``"cap"`` (the rule that bound
    it; the candidates say what it capped). No candidate at all is a multiplier of 1 named ``"none"``.
    """
    if not candidates:
        return Fraction(1), "none"
    if policy.multipliers.stacking == "multiply":
        factor = Fraction(1)
        for _, value in candidates:
            factor *= value
        rule = "multiply:" + "*".join(name for name, _ in candidates)
    else:
        rule, factor = candidates[0]
        for name, value in candidates[1:]:
            if value > factor:
                rule, factor = name, value
    cap = policy.multipliers.cap
    if factor > cap:
        return cap, "cap"
    return factor, rule
