"""Row dataclasses to and from SQLite values.

Times are stored as INTEGER microseconds since the Unix epoch (UTC), like the event store's own tables, and
come back as aware UTC datetimes equal to the ones written. Everything else is stored as it is (``str``,
``int``, NULL for ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from projections.rows import (
    BalanceRow,
    DueRow,
    HistoryRow,
    IdentityRow,
    LotRow,
    TierRow,
)
from projections.standing import StandingRow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

R = TypeVar("R", bound=tuple[Any, ...])


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (value - EPOCH) // MICROSECOND


def from_micros(value: int) -> datetime:
    """The aware UTC datetime ``value`` microseconds after the Unix epoch."""
    return EPOCH + timedelta(microseconds=value)


def opt_micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


class RowCodec(Generic[R]):
    """Stores one row type (a ``NamedTuple``) as a tuple in its table's column order (the field order) and back."""

    def __init__(self, cls: type[R], table: str, key: Sequence[str], times: Sequence[str] = ()) -> None:
        self.cls = cls
        self.table = table
        self.columns: tuple[str, ...] = tuple(cls._fields)  # type: ignore[attr-defined]
        unknown = (set(key) | set(times)) - set(self.columns)
        if unknown:
            raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
        self.key: tuple[str, ...] = tuple(key)
        self.key_index: tuple[int, ...] = tuple(self.columns.index(k) for k in key)
        self._make: Callable[[Iterable[Any]], R] = cls._make  # type: ignore[attr-defined]
        self._times = tuple(i for i, name in enumerate(self.columns) if name in times)

    def encode(self, row: R) -> tuple[Any, ...]:
        if not self._times:
            return tuple(row)
        out = list(row)
        for i in self._times:
            v = out[i]
            if v is not None:
                out[i] = (v - EPOCH) // MICROSECOND
        return tuple(out)

    def decode(self, values: Sequence[Any]) -> R:
        if not self._times:
            return self._make(values)
        out = list(values)
        for i in self._times:
            v = out[i]
            if v is not None:
                out[i] = EPOCH + timedelta(microseconds=v)
        return self._make(out)

    def key_of(self, encoded: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(encoded[i] for i in self.key_index)

    def select(self, table: str | None = None) -> str:
        """``SELECT <columns> FROM <table>`` (``table`` defaults to the codec's, unprefixed)."""
        return f"SELECT {', '.join(self.columns)} FROM {table or self.table}"

    def insert(self, table: str | None = None, *, replace: bool = False, placeholder: str = "?") -> str:
        """``INSERT [OR REPLACE] INTO <table> (<columns>) VALUES (?, ...)``; ``placeholder`` is the driver's
        parameter mark (``"?"`` for sqlite3, ``"%s"`` for psycopg; ``replace`` is SQLite-only)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        marks = ", ".join([placeholder] * len(self.columns))
        return f"{verb} INTO {table or self.table} ({', '.join(self.columns)}) VALUES ({marks})"

    def upsert(self, table: str | None = None, *, placeholder: str = "%s") -> str:
        """The standard-SQL ``INSERT OR REPLACE``: ``INSERT ... ON CONFLICT (<key>) DO UPDATE SET`` every other
        column (PostgreSQL; SQLite accepts it too with ``placeholder="?"``). Needs a unique index on the key."""
        rest = [c for c in self.columns if c not in self.key]
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest) if rest else "DO NOTHING"
        return f"{self.insert(table, placeholder=placeholder)} ON CONFLICT ({', '.join(self.key)}) {action}"


BALANCE = RowCodec(BalanceRow, "balance", ("program_id", "member_id"))
LOT = RowCodec(
    LotRow, "lot", ("program_id", "member_id", "lot_id"), ("occurred_at", "active_at", "expires_at")
)
TIER = RowCodec(
    TierRow,
    "tier_state",
    ("program_id", "member_id"),
    ("tier_since", "next_review_at", "downgrade_at", "override_ends_at"),
)
HISTORY = RowCodec(
    HistoryRow, "history", ("program_id", "member_id", "version"), ("occurred_at", "recorded_at")
)
STANDING = RowCodec(StandingRow, "standing", ("program_id", "member_id"))
IDENTITY = RowCodec(IdentityRow, "identity", ("program_id", "identity"))
DUE = RowCodec(DueRow, "due", ("program_id", "member_id"), ("due_at",))
