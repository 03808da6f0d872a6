"""The policy document's tier parts: tier levels and reviews, paid memberships, benefits and the rules that
grant them."""

from __future__ import annotations

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

from policies.errors import FieldProblems
from policies.ratio import Ratio, Share
from policies.vocabulary import (
    MEMBERSHIP_SCHEDULES,
    BenefitKind,
    Code,
    DayOfMonth,
    PolicyModel,
    RevokeReason,
    Schedule,
    Text,
    ValidityKind,
)

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
