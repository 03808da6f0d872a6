"""The rows of an import file (CSV or JSON lines), read and checked for shape (pure: no store, no clock).

Each record becomes an :class:`ImportRow` or a :class:`RowError` naming its row, field and reason; a bad row never
stops the rows after it. The columns are documented in docs/import.md. A row's number is the line of the file it
starts on (a CSV header is line 1, so its first record is row 2).

Times are an ISO 8601 instant with its offset, or a date alone in the program's time zone: the start of that day,
except for the columns that end something (``expires_at`` of a lot, ``membership_end``), where a date means the
end of that day (the lot is usable through it).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from ledger.application.identity import IDENTITY_KINDS
from ledger.application.personal import PersonalProfile
from ledger.domain.commands import ImportedLot, ImportedMembership

MAX_ROW_CHARS = 65_536
"""The longest record accepted (characters of its fields together)."""
MAX_IDENTITIES = 16
MAX_LOTS = 1_000
MAX_ID = 128

COLUMNS = (
    "member_id", "identities", "consent", "birth_month", "baby_birth_date", "phone", "tier", "tier_since",
    "growth", "growth_window_start", "growth_window_end", "lots", "membership_plan", "membership_id",
    "membership_start", "membership_end", "membership_paid_fen",
)  # fmt: skip
"""Every column an import row may have; only ``member_id`` is required."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    member_id: str
    field: str
    reason: str
    """A stable code: ``INVALID_ARGUMENT`` for a malformed field, else the ledger's reason (``MEMBER_EXISTS``...)."""
    message: str


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One member as the file gives it, checked for shape."""

    row: int
    member_id: str
    identities: tuple[tuple[str, str], ...]
    profile: PersonalProfile | None
    tier: str
    tier_since: datetime | None
    growth: int
    growth_window_start: datetime | None
    growth_window_end: datetime | None
    lots: tuple[ImportedLot, ...]
    membership: ImportedMembership | None


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def records(lines: Iterable[str], file_format: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """``(row, record)`` for each record of a ``csv`` or ``jsonl`` file; a record that cannot be read is a
    :class:`RowError`."""
    if file_format == "csv":
        yield from _csv_records(lines)
    elif file_format == "jsonl":
        yield from _jsonl_records(lines)
    else:
        raise ValueError(f"unknown import format {file_format!r}: csv or jsonl")


def _csv_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    reader = csv.reader(iter(lines))
    header: list[str] | None = None
    line = 1
    for fields in reader:
        start, line = line, reader.line_num + 1
        if header is None:
            header = [h.strip() for h in fields]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown or "member_id" not in header:
                problem = f"unknown columns {unknown}" if unknown else "no member_id column"
                yield start, RowError(start, "", "header", "INVALID_ARGUMENT", problem)
                return
            continue
        if not any(f.strip() for f in fields):
            continue
        if sum(len(f) for f in fields) > MAX_ROW_CHARS:
            yield (
                start,
                RowError(start, "", "row", "INVALID_ARGUMENT", f"longer than {MAX_ROW_CHARS} characters"),
            )
            continue
        if len(fields) != len(header):
            message = f"has {len(fields)} fields, the header {len(header)}"
            yield start, RowError(start, "", "row", "INVALID_ARGUMENT", message)
            continue
        yield start, {k: v for k, v in zip(header, fields, strict=True) if v != ""}


def _jsonl_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if len(text) > MAX_ROW_CHARS:
            yield n, RowError(n, "", "row", "INVALID_ARGUMENT", f"longer than {MAX_ROW_CHARS} characters")
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            yield n, RowError(n, "", "row", "INVALID_ARGUMENT", f"not JSON: {exc.args[0]}")
            continue
        if not isinstance(value, dict):
            yield n, RowError(n, "", "row", "INVALID_ARGUMENT", "must be a JSON object")
            continue
        unknown = sorted(k for k in value if k not in COLUMNS)
        if unknown:
            yield (
                n,
                RowError(
                    n,
                    str(value.get("member_id", ""))[:MAX_ID],
                    unknown[0],
                    "INVALID_ARGUMENT",
                    "unknown field",
                ),
            )
            continue
        yield n, {k: v for k, v in value.items() if v is not None and v != ""}


def parse_row(row: int, record: dict[str, Any], tz: tzinfo) -> ImportRow | RowError:
    """Check one record's shape; ``tz`` is the program's time zone (for dates given alone)."""
    member_id = str(record.get("member_id", ""))[:MAX_ID]
    try:
        return _parse(row, record, tz)
    except _Bad as bad:
        return RowError(row, member_id, bad.field, "INVALID_ARGUMENT", bad.message)


def _parse(row: int, r: dict[str, Any], tz: tzinfo) -> ImportRow:
    member_id = _id(r, "member_id", required=True)
    identities = _identities(r.get("identities"))
    consent = _bool(r, "consent")
    birth_month = _int(r, "birth_month")
    if birth_month is not None and not 1 <= birth_month <= 12:
        raise _Bad("birth_month", "must be 1 to 12")
    baby = r.get("baby_birth_date")
    if baby is not None:
        try:
            date.fromisoformat(str(baby))
        except ValueError as exc:
            raise _Bad("baby_birth_date", "must be a date YYYY-MM-DD") from exc
    phone = _text(r, "phone", 32)
    given = birth_month is not None or baby is not None or phone is not None
    if given and not consent:
        raise _Bad("consent", "must be true when personal data is given")
    profile = (
        PersonalProfile(
            birth_month=birth_month, baby_birth_date=str(baby) if baby else None, phone=phone, consent=True
        )
        if given
        else None
    )
    growth = _int(r, "growth") or 0
    start = _time(r, "growth_window_start", tz)
    end = _time(r, "growth_window_end", tz)
    if growth < 0:
        raise _Bad("growth", "must not be negative")
    if growth and (start is None or end is None):
        raise _Bad(
            "growth_window_end" if start is not None else "growth_window_start", "growth needs its window"
        )
    plan = _text(r, "membership_plan", MAX_ID)
    membership = None
    if plan is not None:
        term_start = _time(r, "membership_start", tz)
        term_end = _time(r, "membership_end", tz, end_of_day=True)
        if term_start is None:
            raise _Bad("membership_start", "is required with membership_plan")
        if term_end is None:
            raise _Bad("membership_end", "is required with membership_plan")
        paid = _int(r, "membership_paid_fen") or 0
        if paid < 0:
            raise _Bad("membership_paid_fen", "must not be negative")
        membership = ImportedMembership(
            membership_id=_id(r, "membership_id") or "imported-1",
            plan=plan,
            term_start=term_start,
            term_end=term_end,
            price_fen=paid,
        )
    else:
        for name in ("membership_id", "membership_start", "membership_end", "membership_paid_fen"):
            if name in r:
                raise _Bad(name, "is given without membership_plan")
    return ImportRow(
        row=row,
        member_id=member_id,
        identities=identities,
        profile=profile,
        tier=_text(r, "tier", MAX_ID) or "",
        tier_since=_time(r, "tier_since", tz),
        growth=growth,
        growth_window_start=start,
        growth_window_end=end,
        lots=_lots(r.get("lots"), tz),
        membership=membership,
    )


def _text(r: dict[str, Any], name: str, limit: int) -> str | None:
    value = r.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(name, "must be text")
    value = value.strip()
    if len(value) > limit:
        raise _Bad(name, f"at most {limit} characters")
    return value or None


def _id(r: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = _text(r, name, MAX_ID)
    if value is None:
        if required:
            raise _Bad(name, "is required")
        return ""
    if any(c.isspace() or not c.isprintable() for c in value):
        raise _Bad(name, "must not contain spaces or control characters")
    return value


def _int(r: dict[str, Any], name: str) -> int | None:
    value = r.get(name)
    if value is None:
        return None
    if isinstance(value, bool | float):
        raise _Bad(name, "must be a whole number")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or len(text) > 18:
        raise _Bad(name, "must be a whole number")
    return int(text)


def _bool(r: dict[str, Any], name: str) -> bool:
    value = r.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise _Bad(name, "must be true or false")


def parse_time(text: str, tz: tzinfo, *, end_of_day: bool = False) -> datetime:
    """An instant with its offset, or a date alone in ``tz`` (its start; with ``end_of_day``, the next day's)."""
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(), tz).astimezone(UTC)
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset")
    return value.astimezone(UTC)


def _time(r: dict[str, Any], name: str, tz: tzinfo, *, end_of_day: bool = False) -> datetime | None:
    value = r.get(name)
    if value is None:
        return None
    try:
        return parse_time(str(value), tz, end_of_day=end_of_day)
    except ValueError as exc:
        raise _Bad(name, "must be a date YYYY-MM-DD or an instant with its offset") from exc


def _identities(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items: list[Any] = value.split(";") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _Bad("identities", "must be a list")
    if len(items) > MAX_IDENTITIES:
        raise _Bad("identities", f"at most {MAX_IDENTITIES} identities")
    out: list[tuple[str, str]] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            kind, ident = str(item.get("kind", "")), str(item.get("value", ""))
        elif isinstance(item, str) and ":" in item:
            kind, ident = item.split(":", 1)
        else:
            raise _Bad(f"identities[{i}]", "must be kind:value")
        kind, ident = kind.strip(), ident.strip()
        if kind not in IDENTITY_KINDS:
            raise _Bad(f"identities[{i}].kind", f"must be one of {', '.join(IDENTITY_KINDS)}")
        if not ident or len(ident) > 256:
            raise _Bad(f"identities[{i}].value", "must be 1 to 256 characters")
        if (kind, ident) in out:
            raise _Bad(f"identities[{i}]", "the same identity is listed twice")
        out.append((kind, ident))
    return tuple(out)


def _lots(value: Any, tz: tzinfo) -> tuple[ImportedLot, ...]:
    if value is None:
        return ()
    items: list[Any] = [p for p in value.split(";") if p.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _Bad("lots", "must be a list")
    if len(items) > MAX_LOTS:
        raise _Bad("lots", f"at most {MAX_LOTS} opening lots per member")
    out: list[ImportedLot] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            parts = item.split("@")
            if len(parts) != 3:
                raise _Bad(f"lots[{i}]", "must be points@earned_at@expires_at")
            item = {"points": parts[0], "earned_at": parts[1], "expires_at": parts[2]}
        if not isinstance(item, dict):
            raise _Bad(f"lots[{i}]", "must be an object with points, earned_at, expires_at")
        try:
            points = _int(item, "points")
            earned = _time(item, "earned_at", tz)
            expires = _time(item, "expires_at", tz, end_of_day=True)
        except _Bad as bad:
            raise _Bad(f"lots[{i}].{bad.field}", bad.message) from None
        if points is None or earned is None or expires is None:
            missing = "points" if points is None else "earned_at" if earned is None else "expires_at"
            raise _Bad(f"lots[{i}].{missing}", "is required")
        if points <= 0:
            raise _Bad(f"lots[{i}].points", "must be positive")
        out.append(ImportedLot(points=points, earned_at=earned, expires_at=expires))
    return tuple(out)
