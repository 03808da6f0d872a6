"""Lots: pending for 7 days, expiring at the end of the local month 12 months after activation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from policies import Policy, activation_time, lot_expiry, policy_from_data, relot_expiry


def test_purchase_points_activate_seven_days_after_the_sale(policy: Policy, sh) -> None:
    sale = sh(2026, 3, 3, 10, 15)
    assert activation_time(policy, sale) == sh(2026, 3, 10, 10, 15)
    assert activation_time(policy, sale) - sale == timedelta(days=7)


def test_active_on_march_10_expires_at_the_end_of_march_31_next_year(policy: Policy, sh) -> None:
    expires = lot_expiry(policy, sh(2026, 3, 10, 10, 15))
    assert expires == sh(2027, 4, 1)
    assert expires == datetime(2027, 3, 31, 16, tzinfo=UTC)
    assert expires.tzinfo == UTC


def test_a_sale_at_2330_local_on_the_last_day_of_a_month(policy: Policy, sh) -> None:
    sale = sh(2026, 2, 28, 23, 30)  # 2026-02-28T15:30Z
    active = activation_time(policy, sale)
    assert active == sh(2026, 3, 7, 23, 30)
    # the end of March 2027 in Shanghai, not midnight UTC
    assert lot_expiry(policy, active) == sh(2027, 4, 1) == datetime(2027, 3, 31, 16, tzinfo=UTC)


def test_points_active_at_2330_local_on_the_last_day_of_a_month(policy: Policy, sh) -> None:
    active = sh(2026, 3, 31, 23, 30)  # behaviour points are active at once
    assert lot_expiry(policy, active) == sh(2027, 4, 1)
    assert lot_expiry(policy, sh(2026, 4, 1, 0, 0)) == sh(2027, 5, 1)


def test_activation_just_after_local_midnight_counts_in_the_local_month(policy: Policy, sh) -> None:
    active = sh(2026, 4, 1, 5, 0)  # 2026-03-31T21:00Z: March in UTC, April locally
    assert lot_expiry(policy, active) == sh(2027, 5, 1)
    last_instant_of_march = sh(2026, 3, 31, 23, 59, 59)
    assert lot_expiry(policy, last_instant_of_march) == sh(2027, 4, 1)


def test_expiry_months_come_from_the_policy(document: dict[str, Any], sh) -> None:
    document["lots"]["expiry"]["months"] = 6
    assert lot_expiry(policy_from_data(document), sh(2026, 9, 30)) == sh(2027, 4, 1)


def test_year_end_expiry(document: dict[str, Any], sh) -> None:
    document["lots"]["expiry"] = {"kind": "year_end", "years_after": 1}
    year_end = policy_from_data(document)
    assert lot_expiry(year_end, sh(2026, 3, 10)) == sh(2028, 1, 1)
    assert lot_expiry(year_end, sh(2026, 12, 31, 23, 30)) == sh(2028, 1, 1)
    assert lot_expiry(year_end, sh(2027, 1, 1, 5, 0)) == sh(2029, 1, 1)  # 2026-12-31T21:00Z
    document["lots"]["expiry"] = {"kind": "year_end", "years_after": 0}
    assert lot_expiry(policy_from_data(document), sh(2026, 3, 10)) == sh(2027, 1, 1)


def test_returned_points_whose_lot_expired_live_thirty_more_days(policy: Policy, sh) -> None:
    assert relot_expiry(policy, sh(2027, 5, 2, 12)) == sh(2027, 6, 1, 12)
