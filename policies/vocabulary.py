"""The words a policy document is written in: program-chosen codes and texts, the closed choices (stacking,
expiry, clawback, benefit kinds, validity, schedules), and the frozen base model every part of it shares."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

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
Schedule = Literal[
    "birthday_month", "monthly", "quarterly", "on_tier", "membership_start", "membership_monthly"
]

CALENDAR_SCHEDULES: frozenset[str] = frozenset({"birthday_month", "monthly", "quarterly"})
MEMBERSHIP_SCHEDULES: frozenset[str] = frozenset({"membership_start", "membership_monthly"})


class PolicyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
