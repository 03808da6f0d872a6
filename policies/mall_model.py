"""The policy document's points mall (its rewards and their limits) and family accounts (households and
their transfers)."""

from __future__ import annotations

from datetime import UTC, datetime
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
from policies.vocabulary import (
    Code,
    PolicyModel,
    Text,
)

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
        if (
            self.sale_starts_at is not None
            and self.sale_ends_at is not None
            and self.sale_ends_at <= self.sale_starts_at
        ):
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
