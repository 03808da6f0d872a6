"""The policy document's points parts: earning, member days, campaigns and multipliers, lots and their
expiry, redemption, refunds, behaviours and their cap groups."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Literal

from pydantic import (
    AwareDatetime,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from policies.errors import FieldProblems
from policies.ratio import Ratio
from policies.vocabulary import (
    Audience,
    Clawback,
    Code,
    DayOfMonth,
    ExpiryKind,
    Key,
    PolicyModel,
    StackingRule,
    Text,
)

# --- points ---------------------------------------------------------------------------------------------------


class Earning(PolicyModel):
    """Points per CNY paid. A category's rate replaces ``points_per_cny`` for lines of that category; a
    designated SKU's bonus is a fixed number of points per unit, added after the multiplier."""

    points_per_cny: Ratio = Fraction(1)
    category_rates: dict[Key, Ratio] = Field(default_factory=dict)
    sku_bonus_points: dict[Key, NonNegativeInt] = Field(default_factory=dict)


class MemberDay(PolicyModel):
    """A day of each month (local) on which purchases earn ``factor`` times."""

    day: DayOfMonth
    factor: Ratio


class Campaign(PolicyModel):
    """A multiplier for sales in ``[starts_at, ends_at)``. The ``inactive`` audience is members whose last
    activity is at least ``inactive_days`` before the sale, or who have never been active."""

    id: Code
    name: Text
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    factor: Ratio
    audience: Audience = "all"
    inactive_days: PositiveInt | None = None

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        problems: list[tuple[str, str]] = []
        if self.ends_at <= self.starts_at:
            problems.append(("ends_at", "must be after starts_at"))
        if self.audience == "inactive" and self.inactive_days is None:
            problems.append(("inactive_days", "is required for the inactive audience"))
        if self.audience == "all" and self.inactive_days is not None:
            problems.append(("inactive_days", "applies only to the inactive audience"))
        if problems:
            raise FieldProblems(problems)
        return self


class Multipliers(PolicyModel):
    """Which multipliers apply to a purchase and how they combine: the highest wins, or they multiply; the
    result never exceeds ``cap``."""

    stacking: StackingRule = "highest"
    cap: Ratio = Fraction(3)
    member_day: MemberDay | None = None
    birthday_month: Ratio | None = None
    campaigns: tuple[Campaign, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Multipliers:
        problems: list[tuple[str, str]] = []
        if self.cap < 1:
            problems.append(("cap", "must be at least 1"))
        seen: set[str] = set()
        for i, campaign in enumerate(self.campaigns):
            if campaign.id in seen:
                problems.append((f"campaigns.{i}.id", f"duplicate campaign id {campaign.id!r}"))
            seen.add(campaign.id)
        if problems:
            raise FieldProblems(problems)
        return self


class Expiry(PolicyModel):
    """``end_of_month_after``: at the end of the local month ``months`` after the month a lot became active.
    ``year_end``: at the end of the local year ``years_after`` years after the year it became active."""

    kind: ExpiryKind
    months: NonNegativeInt = 12
    years_after: NonNegativeInt = 1


class Lots(PolicyModel):
    """Purchase points are pending for ``pending_days``; points returned after their lot expired form a new
    lot expiring ``relot_days`` after the refund."""

    pending_days: NonNegativeInt = 7
    expiry: Expiry
    relot_days: PositiveInt = 30


class Redemption(PolicyModel):
    """What a point is worth when spent, and how long a checkout hold lives."""

    point_value_fen: PositiveInt = 1
    hold_ttl_seconds: PositiveInt = 900


class Refunds(PolicyModel):
    """When a refund takes back more than the member holds: run into arrears, or stop at the balance."""

    clawback: Clawback = "arrears"


# --- behaviours -----------------------------------------------------------------------------------------------


class Behaviour(PolicyModel):
    """Points and growth for something a member does; counted against its cap group."""

    points: NonNegativeInt
    growth: NonNegativeInt
    cap_group: Code
    coupon: Code | None = None
    counts_as_referral: bool = False
    reference: Literal["required", "optional"] | None = None
    """Whether an award needs the caller's reference: the id of the thing rewarded (the review, the event ticket,
    the invitee) that turns a second award for it into a refusal. ``optional`` suits what a member does at most
    once in a cap period anyway (a daily check-in). Unset: required, except for the behaviour ``check_in``
    (documents published before this field existed relied on that)."""


class CapGroup(PolicyModel):
    """How many awards of the group's behaviours a member may get per local day and per local month."""

    per_day: NonNegativeInt | None = None
    per_month: NonNegativeInt | None = None
