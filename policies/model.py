"""The program rules as a validated, immutable model (pydantic v2).

A policy document (YAML or JSON, see ``policies.documents``) validates into a ``Policy``. Every model is frozen
and refuses unknown fields. Money is integer fen, points are integers, and every rate, multiplier and share is
an exact ``Fraction`` (see ``policies.ratio``). Times are timezone-aware and held in UTC.

Checks that involve one model are made by that model; references between parts of the policy (a behaviour's
cap group, a grant's benefit, tier and plan codes) are checked by ``policies.consistency``. Every problem is
reported with the path of the field at fault.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from policies.consistency import policy_problems
from policies.errors import FieldProblems
from policies.ratio import Ratio, Share

__all__ = [
    "Behaviour",
    "Benefit",
    "Campaign",
    "CapGroup",
    "Code",
    "Earning",
    "Expiry",
    "GrantRule",
    "Lots",
    "MemberDay",
    "MembershipPlan",
    "Multipliers",
    "Policy",
    "Ratio",
    "Redemption",
    "Refunds",
    "Reward",
    "RewardLimit",
    "Share",
    "TierLevel",
    "Tiers",
    "Validity",
]

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)]
"""An identifier chosen by the program: letters, digits, ``_``, ``.`` and ``-`` (never ``:`` or ``*``, which
the ledger uses in rule names such as ``tier:gold``)."""

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
DayOfMonth = Annotated[int, Field(ge=1, le=28)]

StackingRule = Literal["highest", "multiply"]
Audience = Literal["all", "inactive"]
ExpiryKind = Literal["end_of_month_after", "year_end"]
Clawback = Literal["arrears", "cap_at_balance"]
BenefitKind = Literal["coupon", "service", "perk", "gift"]
ValidityKind = Literal["days", "end_of_day", "end_of_month", "term"]
RevokeReason = Literal["downgrade", "membership_cancelled", "membership_lapsed"]
Schedule = Literal["birthday_month", "monthly", "quarterly", "on_tier", "membership_start", "membership_monthly"]

CALENDAR_SCHEDULES: frozenset[str] = frozenset({"birthday_month", "monthly", "quarterly"})
MEMBERSHIP_SCHEDULES: frozenset[str] = frozenset({"membership_start", "membership_monthly"})


class PolicyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


# --- tiers and memberships ------------------------------------------------------------------------------------


class TierLevel(PolicyModel):
    """A tier. It qualifies with ``min_growth`` growth value in the window, or with ``min_referrals``
    referrals when set; when ``purchase_within_days`` is set, a purchase in that many days is needed as well."""

    code: Code
    name: Text
    min_growth: NonNegativeInt
    min_referrals: PositiveInt | None = None
    purchase_within_days: PositiveInt | None = None
    multiplier: Ratio
    redemption_cap: Share


class Tiers(PolicyModel):
    """Tier levels from the entry tier up, the growth window, the review period and the downgrade grace."""

    window_months: PositiveInt = 12
    review_months: PositiveInt = 12
    grace_days: NonNegativeInt = 30
    levels: tuple[TierLevel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Tiers:
        problems: list[tuple[str, str]] = []
        entry = self.levels[0]
        if entry.min_growth != 0:
            problems.append(("levels.0.min_growth", "the entry tier must need 0 growth"))
        if entry.min_referrals is not None:
            problems.append(("levels.0.min_referrals", "the entry tier has no qualification"))
        if entry.purchase_within_days is not None:
            problems.append(("levels.0.purchase_within_days", "the entry tier has no qualification"))
        seen: set[str] = set()
        for i, level in enumerate(self.levels):
            if level.code in seen:
                problems.append((f"levels.{i}.code", f"duplicate tier code {level.code!r}"))
            seen.add(level.code)
            if i and level.min_growth <= self.levels[i - 1].min_growth:
                problems.append(
                    (f"levels.{i}.min_growth", "tiers must be listed by strictly ascending min_growth")
                )
        if problems:
            raise FieldProblems(problems)
        return self


class MembershipPlan(PolicyModel):
    """A paid membership bought for a term; it overlays the earned tier."""

    name: Text
    price_fen: NonNegativeInt
    term_months: PositiveInt
    multiplier: Ratio
    redemption_cap: Share
    cooling_off_days: NonNegativeInt = 7


# --- benefits -------------------------------------------------------------------------------------------------


class Validity(PolicyModel):
    """How long a granted benefit can be used: ``days`` after the grant, to the end of the local day or month
    of the grant, or to the end of the paid membership term that granted it."""

    kind: ValidityKind
    days: PositiveInt = 365


class Benefit(PolicyModel):
    """Something a member may use. ``quota_total`` uses within the validity (None: unlimited), at most
    ``quota_per_month`` of them in one local month. ``revoke_on`` lists what withdraws the unused rest."""

    name: Text
    kind: BenefitKind
    value_fen: NonNegativeInt | None = None
    value_by_tier: dict[Code, NonNegativeInt] | None = None
    validity: Validity = Field(default_factory=lambda: Validity(kind="days", days=365))
    quota_total: PositiveInt | None = None
    quota_per_month: PositiveInt | None = None
    revoke_on: tuple[RevokeReason, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Benefit:
        problems: list[tuple[str, str]] = []
        if self.value_fen is not None and self.value_by_tier is not None:
            problems.append(("value_by_tier", "give either value_fen or value_by_tier, not both"))
        if (
            self.quota_total is not None
            and self.quota_per_month is not None
            and self.quota_per_month > self.quota_total
        ):
            problems.append(("quota_per_month", "cannot be more than quota_total"))
        if len(set(self.revoke_on)) != len(self.revoke_on):
            problems.append(("revoke_on", "lists a reason twice"))
        if problems:
            raise FieldProblems(problems)
        return self


class GrantRule(PolicyModel):
    """When a benefit is granted. Calendar schedules fall on local midnight of ``day_of_month``:
    ``birthday_month`` in the member's birth month, ``monthly`` every month, ``quarterly`` in the first month
    of each quarter; ``on_tier`` when the member reaches ``min_tier``; ``membership_start`` when a ``plan``
    term starts and ``membership_monthly`` on ``day_of_month`` of every month within it."""

    benefit: Code
    schedule: Schedule
    day_of_month: DayOfMonth = 1
    min_tier: Code | None = None
    plan: Code | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GrantRule:
        problems: list[tuple[str, str]] = []
        membership = self.schedule in MEMBERSHIP_SCHEDULES
        if membership and self.plan is None:
            problems.append(("plan", f"is required for the {self.schedule} schedule"))
        if not membership and self.plan is not None:
            problems.append(("plan", f"does not apply to the {self.schedule} schedule"))
        if membership and self.min_tier is not None:
            problems.append(("min_tier", f"does not apply to the {self.schedule} schedule"))
        if self.schedule == "on_tier" and self.min_tier is None:
            problems.append(("min_tier", "is required for the on_tier schedule"))
        if problems:
            raise FieldProblems(problems)
        return self


# --- the points mall ------------------------------------------------------------------------------------------

LimitPeriod = Literal["year", "month"]


class RewardLimit(PolicyModel):
    """At most ``count`` exchanges of one reward per member in one local calendar ``per`` (year or month)."""

    count: PositiveInt
    per: LimitPeriod


class Reward(PolicyModel):
    """One item of the points mall: exchanged for ``price_points`` points (plus ``price_fen`` in cash, which the
    checkout collects), it grants one entitlement of ``benefit`` (a coupon, a gift to collect, a service).

    ``stock`` units exist (None: unlimited); a member may exchange it at most ``limit``; only members at
    ``min_tier`` or above may; only within ``[sale_starts_at, sale_ends_at)`` when those are given."""

    name: Text
    price_points: PositiveInt
    price_fen: NonNegativeInt = 0
    benefit: Code
    stock: NonNegativeInt | None = None
    limit: RewardLimit | None = None
    min_tier: Code | None = None
    sale_starts_at: AwareDatetime | None = None
    sale_ends_at: AwareDatetime | None = None

    @field_validator("sale_starts_at", "sale_ends_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _window(self) -> Reward:
        if self.sale_starts_at is not None and self.sale_ends_at is not None and self.sale_ends_at <= self.sale_starts_at:
            raise FieldProblems([("sale_ends_at", "must be after sale_starts_at")])
        return self


# --- family accounts (households) ---------------------------------------------------------------------------


class HouseholdTransfers(PolicyModel):
    """What one member of a household may give another: at most ``per_transfer_max`` points in one transfer and
    ``per_month_per_giver`` points in one local calendar month (by the transfers' business time)."""

    per_transfer_max: PositiveInt = 10_000
    per_month_per_giver: PositiveInt = 10_000

    @model_validator(mode="after")
    def _consistent(self) -> HouseholdTransfers:
        if self.per_transfer_max > self.per_month_per_giver:
            raise FieldProblems([("per_transfer_max", "cannot be more than per_month_per_giver")])
        return self


class Household(PolicyModel):
    """Family accounts: an owner and at most ``max_members`` more members of the same program, who transfer
    points to each other within ``transfers``. ``growth_to_owner``: growth value a member earns (or has taken
    back) while in the household also counts toward the owner's tier; the member keeps its own. Off unless
    ``enabled``."""

    enabled: bool = False
    max_members: PositiveInt = 5
    """Members besides the owner."""
    transfers: HouseholdTransfers = Field(default_factory=HouseholdTransfers)
    growth_to_owner: bool = False


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
