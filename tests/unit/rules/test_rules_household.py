"""The family-account rules, pure: seats, the per-transfer and per-month limits in the program's month, points."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import (
    PolicyInvalid,
    judge_seat,
    judge_transfer,
    little_sprout,
    policy_from_data,
    transfer_month,
)
from policies.documents import dump_policy

POLICY = little_sprout()
AT = datetime(2026, 3, 31, 15, 59, tzinfo=UTC)  # 23:59 on 31 March in Asia/Shanghai


def test_the_reference_program_seats_an_owner_and_five_members() -> None:
    assert judge_seat(POLICY, 4).allowed
    full = judge_seat(POLICY, 5)
    assert full.reason == "HOUSEHOLD_FULL" and full.details == {"max_members": 5, "members": 5}


def test_the_month_is_the_local_calendar_month() -> None:
    start, end = transfer_month(POLICY, AT)
    assert start == datetime(2026, 2, 28, 16, 0, tzinfo=UTC) and end == datetime(
        2026, 3, 31, 16, 0, tzinfo=UTC
    )
    assert transfer_month(POLICY, datetime(2026, 3, 31, 16, 0, tzinfo=UTC))[0] == end


@pytest.mark.parametrize(
    ("points", "given", "available", "reason", "left"),
    [
        (10_000, 0, 10_000, None, None),
        (10_001, 0, 20_000, "TRANSFER_LIMIT_REACHED", 10_000),
        (4_000, 6_000, 9_000, None, None),
        (4_001, 6_000, 9_000, "TRANSFER_LIMIT_REACHED", 4_000),
        (1, 10_000, 9_000, "TRANSFER_LIMIT_REACHED", 0),
        (501, 0, 500, "INSUFFICIENT_POINTS", None),
    ],
)
def test_a_transfer_is_judged_by_the_limits_then_the_points(
    points: int, given: int, available: int, reason: str | None, left: int | None
) -> None:
    verdict = judge_transfer(POLICY, points, given_this_month=given, available_points=available, at=AT)
    assert verdict.reason == reason
    if left is not None:
        assert verdict.details["left"] == left


def test_a_program_without_family_accounts_refuses_seats_and_transfers() -> None:
    off = POLICY.model_copy(update={"household": POLICY.household.model_copy(update={"enabled": False})})
    assert judge_seat(off, 0).reason == "HOUSEHOLDS_DISABLED"
    assert (
        judge_transfer(off, 1, given_this_month=0, available_points=5, at=AT).reason == "HOUSEHOLDS_DISABLED"
    )


def _with_household(**household: object) -> dict[str, object]:
    import yaml

    data: dict[str, object] = yaml.safe_load(dump_policy(POLICY))
    current = data["household"]
    assert isinstance(current, dict)
    data["household"] = {**current, **household}
    return data


def test_growth_to_the_owner_is_a_switch_off_in_the_reference_program() -> None:
    assert POLICY.household.growth_to_owner is False
    assert policy_from_data(_with_household(growth_to_owner=True)).household.growth_to_owner is True


def test_a_transfer_limit_above_the_monthly_limit_is_refused() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        policy_from_data(
            _with_household(transfers={"per_transfer_max": 20_000, "per_month_per_giver": 10_000})
        )
    assert "per_transfer_max" in str(caught.value)


def test_a_policy_without_a_household_section_has_none() -> None:
    data = _with_household()
    del data["household"]
    assert policy_from_data(data).household.enabled is False
