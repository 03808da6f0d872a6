"""References between the parts of a policy: every code a rule names must be defined."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.model import Policy

_MEMBERSHIP_SCHEDULES = frozenset({"membership_start", "membership_monthly"})


def policy_problems(policy: Policy) -> list[tuple[str, str]]:
    """Every dangling or contradictory reference in ``policy``, as ``(field_path, message)``."""
    return [
        *_behaviour_problems(policy),
        *_benefit_problems(policy),
        *_grant_problems(policy),
        *_mall_problems(policy),
    ]


def _known(codes: Iterable[str]) -> str:
    names = sorted(codes)
    return ", ".join(names) if names else "none defined"


def _behaviour_problems(policy: Policy) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name, behaviour in policy.behaviours.items():
        if behaviour.cap_group not in policy.cap_groups:
            problems.append(
                (
                    f"behaviours.{name}.cap_group",
                    f"unknown cap group {behaviour.cap_group!r} (known: {_known(policy.cap_groups)})",
                )
            )
        if behaviour.coupon is not None:
            benefit = policy.benefits.get(behaviour.coupon)
            if benefit is None:
                problems.append(
                    (
                        f"behaviours.{name}.coupon",
                        f"unknown benefit {behaviour.coupon!r} (known: {_known(policy.benefits)})",
                    )
                )
            elif benefit.validity.kind == "term":
                problems.append(
                    (f"behaviours.{name}.coupon", f"benefit {behaviour.coupon!r} is valid for a membership term")
                )
    return problems


def _benefit_problems(policy: Policy) -> list[tuple[str, str]]:
    tiers = {level.code for level in policy.tiers.levels}
    problems: list[tuple[str, str]] = []
    for code, benefit in policy.benefits.items():
        for tier in benefit.value_by_tier or {}:
            if tier not in tiers:
                problems.append(
                    (f"benefits.{code}.value_by_tier.{tier}", f"unknown tier {tier!r} (known: {_known(tiers)})")
                )
    return problems


def _grant_problems(policy: Policy) -> list[tuple[str, str]]:
    tiers = {level.code for level in policy.tiers.levels}
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(policy.grants):
        benefit = policy.benefits.get(rule.benefit)
        if benefit is None:
            problems.append(
                (f"grants.{i}.benefit", f"unknown benefit {rule.benefit!r} (known: {_known(policy.benefits)})")
            )
        elif benefit.validity.kind == "term" and rule.schedule not in _MEMBERSHIP_SCHEDULES:
            problems.append(
                (
                    f"grants.{i}.benefit",
                    f"benefit {rule.benefit!r} is valid for a membership term; only membership grants can give it",
                )
            )
        if rule.min_tier is not None and rule.min_tier not in tiers:
            problems.append(
                (f"grants.{i}.min_tier", f"unknown tier {rule.min_tier!r} (known: {_known(tiers)})")
            )
        if rule.plan is not None and rule.plan not in policy.memberships:
            problems.append(
                (f"grants.{i}.plan", f"unknown membership plan {rule.plan!r} (known: {_known(policy.memberships)})")
            )
    return problems


def _mall_problems(policy: Policy) -> list[tuple[str, str]]:
    tiers = {level.code for level in policy.tiers.levels}
    problems: list[tuple[str, str]] = []
    for code, reward in policy.mall.items():
        benefit = policy.benefits.get(reward.benefit)
        if benefit is None:
            problems.append(
                (f"mall.{code}.benefit", f"unknown benefit {reward.benefit!r} (known: {_known(policy.benefits)})")
            )
        elif benefit.validity.kind == "term":
            problems.append((f"mall.{code}.benefit", f"benefit {reward.benefit!r} is valid for a membership term"))
        if reward.min_tier is not None and reward.min_tier not in tiers:
            problems.append((f"mall.{code}.min_tier", f"unknown tier {reward.min_tier!r} (known: {_known(tiers)})"))
    return problems
