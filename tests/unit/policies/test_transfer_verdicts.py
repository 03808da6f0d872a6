"""The household transfer rule's verdicts (``policies.judge_transfer``), each with its exact message and details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from policies import judge_transfer, little_sprout, policy_from_data

SH = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
POLICY = little_sprout()  # 10,000 points a transfer, 10,000 a month per giver


def verdict(points: int, given: int = 0, available: int = 50_000, policy: Any = POLICY) -> Any:
    return judge_transfer(policy, points, given_this_month=given, available_points=available, at=AT)


def test_switched_off_households_refuse_every_transfer() -> None:
    document: dict[str, Any] = POLICY.model_dump(mode="json")
    document["household"]["enabled"] = False
    v = verdict(1, policy=policy_from_data(document))
    assert (v.reason, v.message, v.details) == (
        "HOUSEHOLDS_DISABLED",
        "this program has no family accounts",
        {},
    )


def test_one_transfer_beyond_its_limit() -> None:
    v = verdict(10_001)
    assert (v.reason, v.message) == ("TRANSFER_LIMIT_REACHED", "at most 10000 points in one transfer")
    assert v.details == {"limit": "per_transfer", "max_points": 10_000, "left": 10_000}


def test_a_transfer_beyond_what_the_giver_may_still_give_this_month() -> None:
    v = verdict(8_001, given=2_000)
    assert (v.reason, v.message) == (
        "TRANSFER_LIMIT_REACHED",
        "at most 10000 points a month per giver: 2000 given, 8000 left",
    )
    assert v.details == {
        "limit": "per_month_per_giver",
        "max_points": 10_000,
        "given": 2_000,
        "left": 8_000,
        "month_starts_at": datetime(2026, 2, 28, 16, 0, tzinfo=UTC),
        "month_ends_at": datetime(2026, 3, 31, 16, 0, tzinfo=UTC),
    }
    assert verdict(8_000, given=2_000).reason is None


def test_a_transfer_of_more_than_the_giver_holds() -> None:
    v = verdict(301, available=300)
    assert (v.reason, v.message, v.details) == (
        "INSUFFICIENT_POINTS",
        "301 points asked, 300 available",
        {"requested": 301, "available": 300},
    )
