"""The paid-plan rules: an unknown plan is named in its error, and a term ends on the program's local calendar."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import UnknownPlan, little_sprout, membership_plan, term_end

POLICY = little_sprout()  # Asia/Shanghai, black_gold: 12 months


def test_an_unknown_plan_is_named() -> None:
    with pytest.raises(UnknownPlan) as caught:
        membership_plan(POLICY, "platinum")
    assert caught.value.code == "platinum"
    assert str(caught.value) == "unknown membership plan 'platinum'"


def test_a_term_ends_twelve_local_months_on() -> None:
    # 29 February 2024, 00:30 in Shanghai (28 February in UTC): a year on is 28 February 2025 in Shanghai
    assert term_end(POLICY, "black_gold", datetime(2024, 2, 28, 16, 30, tzinfo=UTC)) == datetime(
        2025, 2, 27, 16, 30, tzinfo=UTC
    )
