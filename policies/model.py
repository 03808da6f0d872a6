"""The program rules as a validated, immutable model (pydantic v2).

A policy document (YAML or JSON, see ``policies.documents``) validates into a ``Policy``. Every model is frozen
and refuses unknown fields. Money is integer fen, points are integers, and every rate, multiplier and share is
an exact ``Fraction`` (see ``policies.ratio``). Times are timezone-aware and held in UTC.

Checks that involve one model are made by that model; references between parts of the policy (a behaviour's
cap group, a grant's benefit, tier and plan codes) are checked by ``policies.consistency``. Every problem is
reported with the path of the field at fault.

Its parts live beside it: the shared words (:mod:`policies.vocabulary`), points and behaviours
(:mod:`policies.points_model`), tiers, memberships and benefits (:mod:`policies.tier_model`), the points mall and
households (:mod:`policies.mall_model`); every name stays importable from here.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    NonNegativeInt,
    field_validator,
    model_validator,
)

from policies.consistency import policy_problems
from policies.errors import FieldProblems
from policies.mall_model import (
    Household,
    HouseholdTransfers,
    LimitPeriod,
    Reward,
    RewardLimit,
)
from policies.points_model import (
    Behaviour,
    Campaign,
    CapGroup,
    Earning,
    Expiry,
    Lots,
    MemberDay,
    Multipliers,
    Redemption,
    Refunds,
)
from policies.ratio import Ratio, Share
from policies.tier_model import (
    Benefit,
    GrantRule,
    MembershipPlan,
    TierLevel,
    Tiers,
    Validity,
)
from policies.vocabulary import (
    CALENDAR_SCHEDULES,
    MEMBERSHIP_SCHEDULES,
    Audience,
    BenefitKind,
    Clawback,
    Code,
    DayOfMonth,
    ExpiryKind,
    Key,
    PolicyModel,
    RevokeReason,
    Schedule,
    StackingRule,
    Text,
    ValidityKind,
)

__all__ = [
    "CALENDAR_SCHEDULES",
    "MEMBERSHIP_SCHEDULES",
    "Audience",
    "Behaviour",
    "Benefit",
    "BenefitKind",
    "Campaign",
    "CapGroup",
    "Clawback",
    "Code",
    "DayOfMonth",
    "Earning",
    "Expiry",
    "ExpiryKind",
    "GrantRule",
    "Household",
    "HouseholdTransfers",
    "Key",
    "LimitPeriod",
    "Lots",
    "MemberDay",
    "MembershipPlan",
    "Multipliers",
    "Policy",
    "PolicyModel",
    "Ratio",
    "Redemption",
    "Refunds",
    "RevokeReason",
    "Reward",
    "RewardLimit",
    "Schedule",
    "Share",
    "StackingRule",
    "Text",
    "TierLevel",
    "Tiers",
    "Validity",
    "ValidityKind",
]


# --- the policy -----------------------------------------------------------------------------------------------


class Policy(PolicyModel):
    """One program's rules."""

    name: Text
    timezone: str
    earning: Earning = Field(default_factory=Earning)
    multipliers: Multipliers = Field(default_factory=Multipliers)
    lots: Lots
    redemption: Redemption = Field(default_factory=Redemption)
    refunds: Refunds = Field(default_factory=Refunds)
    offline_window_days: NonNegativeInt = 30
    behaviours: dict[Code, Behaviour] = Field(default_factory=dict)
    cap_groups: dict[Code, CapGroup] = Field(default_factory=dict)
    tiers: Tiers
    memberships: dict[Code, MembershipPlan] = Field(default_factory=dict)
    benefits: dict[Code, Benefit] = Field(default_factory=dict)
    grants: tuple[GrantRule, ...] = ()
    mall: dict[Code, Reward] = Field(default_factory=dict)
    """The points mall's catalog: reward id -> reward."""
    household: Household = Field(default_factory=Household)
    """Family accounts (off by default)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _references(self) -> Policy:
        problems = policy_problems(self)
        if problems:
            raise FieldProblems(problems)
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The program's time zone: where its days and months are counted."""
        return ZoneInfo(self.timezone)
