"""Calendar helpers: days and months are local to the program's zone; instants come back in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from policies import (
    Policy,
    add_local_months,
    add_months,
    local,
    local_date,
    local_day_start,
    local_month_start,
    month_end_exclusive,
    next_day_of_month,
    quarter_start,
    year_end_exclusive,
)


def test_local_is_the_wall_clock_of_the_zone(policy: Policy) -> None:
    t = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)
    assert local(policy, t).replace(tzinfo=None) == datetime(2026, 4, 1, 0, 30)
    assert local_date(policy, t) == date(2026, 4, 1)
    assert local_date("UTC", t) == date(2026, 3, 31)


def test_day_and_month_starts_are_local_midnights_in_utc(policy: Policy, sh) -> None:
    t = sh(2026, 3, 31, 23, 30)
    assert local_day_start(policy, t) == datetime(2026, 3, 30, 16, tzinfo=UTC)
    assert local_day_start(policy, t).tzinfo == UTC
    assert local_month_start(policy, t) == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert month_end_exclusive(policy, t) == sh(2026, 4, 1)
    assert month_end_exclusive(policy, sh(2026, 4, 1)) == sh(2026, 5, 1)
    assert month_end_exclusive(policy, sh(2026, 12, 31, 23, 59)) == sh(2027, 1, 1)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 3, 10), 12, date(2027, 3, 10)),
        (date(2026, 11, 15), 3, date(2027, 2, 15)),
        (date(2026, 1, 15), -13, date(2024, 12, 15)),
        (date(2028, 2, 29), -12, date(2027, 2, 28)),
    ],
)
def test_add_months_clamps_the_day(start: date, months: int, expected: date) -> None:
    assert add_months(start, months) == expected


def test_add_months_keeps_a_datetime_wall_clock(sh) -> None:
    assert add_months(sh(2026, 1, 31, 23, 30), 1) == sh(2026, 2, 28, 23, 30)


def test_add_local_months_counts_on_the_local_calendar(policy: Policy, sh) -> None:
    t = sh(2026, 3, 1, 0, 30)  # 2026-02-28T16:30Z: a UTC calendar would land on 2026-03-28
    assert add_local_months(policy, t, 1) == sh(2026, 4, 1, 0, 30)
    assert add_local_months(policy, t, 1).tzinfo == UTC


def test_next_day_of_month_is_strictly_after(policy: Policy, sh) -> None:
    assert next_day_of_month(policy, sh(2026, 3, 14, 23, 59), 15) == sh(2026, 3, 15)
    assert next_day_of_month(policy, sh(2026, 3, 15), 15) == sh(2026, 4, 15)
    assert next_day_of_month(policy, sh(2026, 12, 15, 0, 0, 1), 15) == sh(2027, 1, 15)
    assert next_day_of_month(policy, sh(2026, 3, 31, 23, 0), 1) == sh(2026, 4, 1)
    assert next_day_of_month(policy, sh(2026, 3, 14, 23, 59), 15).tzinfo == UTC
    with pytest.raises(ValueError):
        next_day_of_month(policy, sh(2026, 3, 1), 31)


def test_quarter_and_year_bounds(policy: Policy, sh) -> None:
    assert quarter_start(policy, sh(2026, 6, 30, 23, 59)) == sh(2026, 4, 1)
    assert quarter_start(policy, sh(2026, 7, 1, 0, 0)) == sh(2026, 7, 1)
    assert quarter_start(policy, sh(2026, 2, 14)) == sh(2026, 1, 1)
    assert quarter_start(policy, sh(2026, 12, 31)) == sh(2026, 10, 1)
    assert year_end_exclusive(policy, sh(2026, 12, 31, 23, 59)) == sh(2027, 1, 1)
    assert year_end_exclusive(policy, sh(2026, 3, 10), 1) == sh(2028, 1, 1)


def test_a_naive_time_is_refused(policy: Policy) -> None:
    with pytest.raises(ValueError):
        local_day_start(policy, datetime(2026, 3, 1))
