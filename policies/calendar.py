"""Calendar arithmetic in a program's time zone.

Instants are timezone-aware ``datetime``s; every function that returns an instant returns it in UTC. Days,
months, quarters and years are counted on the local calendar of the program's zone. "End of month M" is the
first instant of month M+1 (an exclusive bound), and likewise for days and years.
"""

from __future__ import annotations

import calendar as _gregorian
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TypeVar
from zoneinfo import ZoneInfo

from policies.model import Policy

ZoneLike = Policy | tzinfo | str
"""A policy (its time zone), a ``tzinfo`` or an IANA zone name."""

D = TypeVar("D", bound=date)


def zone_of(where: ZoneLike) -> tzinfo:
    """The time zone ``where`` stands for."""
    if isinstance(where, Policy):
        return where.zone
    if isinstance(where, str):
        return ZoneInfo(where)
    return where


def require_aware(t: datetime) -> datetime:
    """``t`` itself; raises ``ValueError`` for a naive datetime (the ledger never guesses a zone)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"a time must carry its zone: {t.isoformat()}")
    return t


def in_utc(t: datetime) -> datetime:
    """The instant ``t`` in UTC (refusing a naive datetime)."""
    return require_aware(t).astimezone(UTC)


def local(where: ZoneLike, t: datetime) -> datetime:
    """The instant ``t`` on the local clock."""
    return require_aware(t).astimezone(zone_of(where))


def local_date(where: ZoneLike, t: datetime) -> date:
    """The local calendar day of the instant ``t``."""
    return local(where, t).date()


def local_midnight(where: ZoneLike, day: date) -> datetime:
    """The instant (UTC) at which the local ``day`` begins."""
    return datetime(day.year, day.month, day.day, tzinfo=zone_of(where)).astimezone(UTC)


def local_day_start(where: ZoneLike, t: datetime) -> datetime:
    """The start (UTC) of the local day containing ``t``."""
    return local_midnight(where, local_date(where, t))


def local_day_end(where: ZoneLike, t: datetime) -> datetime:
    """The end (exclusive, UTC) of the local day containing ``t``: the next local midnight."""
    return local_midnight(where, local_date(where, t) + timedelta(days=1))


def local_month_start(where: ZoneLike, t: datetime) -> datetime:
    """The start (UTC) of the local month containing ``t``."""
    return local_midnight(where, local_date(where, t).replace(day=1))


def month_end_exclusive(where: ZoneLike, t: datetime) -> datetime:
    """The end (exclusive, UTC) of the local month containing ``t``: the first instant of the next month."""
    return local_midnight(where, add_months(local_date(where, t).replace(day=1), 1))


def quarter_start(where: ZoneLike, t: datetime) -> datetime:
    """The start (UTC) of the local calendar quarter containing ``t`` (January, April, July, October)."""
    day = local_date(where, t)
    return local_midnight(where, date(day.year, 3 * ((day.month - 1) // 3) + 1, 1))


def year_end_exclusive(where: ZoneLike, t: datetime, years_after: int = 0) -> datetime:
    """The end (exclusive, UTC) of the local year ``years_after`` years after the one containing ``t``."""
    return local_midnight(where, date(local_date(where, t).year + years_after + 1, 1, 1))


def add_months(d: D, n: int) -> D:
    """``d`` moved by ``n`` calendar months (``n`` may be negative), the day clamped to the month's length:
    31 January + 1 month is 28 (or 29) February. A datetime keeps its wall-clock time and ``tzinfo``."""
    index = d.year * 12 + (d.month - 1) + n
    year, month0 = divmod(index, 12)
    month = month0 + 1
    return d.replace(year=year, month=month, day=min(d.day, _gregorian.monthrange(year, month)[1]))


def add_local_months(where: ZoneLike, t: datetime, n: int) -> datetime:
    """The instant (UTC) ``n`` calendar months from ``t`` on the local calendar, same local time of day."""
    return add_months(local(where, t), n).astimezone(UTC)


def next_day_of_month(where: ZoneLike, after: datetime, day: int) -> datetime:
    """The first local midnight (UTC) of day ``day`` (1..28) of a month strictly after the instant ``after``."""
    if not 1 <= day <= 28:
        raise ValueError(f"day of month must be 1..28, got {day}")
    first = local_date(where, after).replace(day=day)
    candidate = local_midnight(where, first)
    if candidate > after:
        return candidate
    return local_midnight(where, add_months(first, 1))
