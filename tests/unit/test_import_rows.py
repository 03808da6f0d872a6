"""Import rows (pure): CSV and JSON lines read into rows, every bad record named by row, field and reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ledger.application.import_rows import MAX_ROW_CHARS, ImportRow, RowError, parse_row, parse_time, records

SH = ZoneInfo("Asia/Shanghai")

CSV = """\
member_id,identities,consent,birth_month,tier,tier_since,growth,growth_window_start,growth_window_end,lots,membership_plan,membership_start,membership_end
m1,card_number:C1;phone_hash:ab:cd,true,5,gold,2026-03-01,1200,2025-12-01,2026-11-30,1000@2026-01-10@2027-01-31;500@2026-06-01T08:00:00+08:00@2027-06-30,black_gold,2026-05-01,2027-04-30

m2,,,,,,,,,,,,
"""


def parsed(file_format: str, text: str) -> list[ImportRow | RowError]:
    out: list[ImportRow | RowError] = []
    for n, record in records(text.splitlines(keepends=True), file_format):
        out.append(record if isinstance(record, RowError) else parse_row(n, record, SH))
    return out


def test_a_csv_row_with_every_column() -> None:
    first, second = parsed("csv", CSV)
    assert isinstance(first, ImportRow) and isinstance(second, ImportRow)
    assert first.row == 2 and second.row == 4  # the line each record starts on; the blank line is skipped
    assert first.identities == (("card_number", "C1"), ("phone_hash", "ab:cd"))
    assert first.profile is not None and first.profile.birth_month == 5 and first.profile.consent
    assert first.tier == "gold" and first.tier_since == datetime(2026, 3, 1, tzinfo=SH)
    assert (first.growth, first.growth_window_end) == (1_200, datetime(2026, 11, 30, tzinfo=SH))
    # A lot's expiry date means usable through that day: it expires at the start of the next, local time.
    assert [(lot.points, lot.earned_at, lot.expires_at) for lot in first.lots] == [
        (1_000, datetime(2026, 1, 10, tzinfo=SH), datetime(2027, 2, 1, tzinfo=SH)),
        (500, datetime(2026, 6, 1, 8, tzinfo=SH), datetime(2027, 7, 1, tzinfo=SH)),
    ]
    assert first.membership is not None and first.membership.term_end == datetime(2027, 5, 1, tzinfo=SH)
    assert first.membership.membership_id == "imported-1"
    assert second.profile is None and second.lots == () and second.tier == ""


def test_the_same_row_as_a_json_line() -> None:
    line = {
        "member_id": "m1",
        "identities": [{"kind": "card_number", "value": "C1"}, "open_id:o-1"],
        "lots": [{"points": 1000, "earned_at": "2026-01-10", "expires_at": "2027-01-31"}],
        "growth": 10,
        "growth_window_start": "2025-12-01T00:00:00Z",
        "growth_window_end": "2026-11-30T00:00:00Z",
    }
    (row,) = parsed("jsonl", json.dumps(line) + "\n")
    assert isinstance(row, ImportRow) and row.row == 1
    assert row.identities == (("card_number", "C1"), ("open_id", "o-1"))
    assert row.lots[0].expires_at == datetime(2027, 2, 1, tzinfo=SH)
    assert row.growth_window_start == datetime(2025, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({}, "member_id"),
        ({"member_id": "m 1"}, "member_id"),
        ({"member_id": "m1", "identities": "fax:1"}, "identities[0].kind"),
        ({"member_id": "m1", "identities": "card_number:1;card_number:1"}, "identities[1]"),
        ({"member_id": "m1", "identities": "nocolon"}, "identities[0]"),
        ({"member_id": "m1", "birth_month": "13", "consent": "true"}, "birth_month"),
        ({"member_id": "m1", "birth_month": "5"}, "consent"),
        ({"member_id": "m1", "consent": "maybe"}, "consent"),
        ({"member_id": "m1", "growth": "1.5"}, "growth"),
        ({"member_id": "m1", "growth": "10"}, "growth_window_start"),
        ({"member_id": "m1", "tier_since": "yesterday"}, "tier_since"),
        (
            {"member_id": "m1", "tier_since": "2026-01-01T00:00:00"},
            "tier_since",
        ),  # an instant needs its offset
        ({"member_id": "m1", "lots": "100@2026-01-01"}, "lots[0]"),
        ({"member_id": "m1", "lots": "x@2026-01-01@2027-01-01"}, "lots[0].points"),
        ({"member_id": "m1", "lots": "-5@2026-01-01@2027-01-01"}, "lots[0].points"),
        ({"member_id": "m1", "lots": "5@2026-13-01@2027-01-01"}, "lots[0].earned_at"),
        ({"member_id": "m1", "membership_plan": "black_gold"}, "membership_start"),
        ({"member_id": "m1", "membership_start": "2026-01-01"}, "membership_start"),
    ],
)
def test_a_bad_field_is_named(record: dict[str, object], field: str) -> None:
    bad = parse_row(7, record, SH)
    assert isinstance(bad, RowError)
    assert (bad.row, bad.field, bad.reason) == (7, field, "INVALID_ARGUMENT")


def test_unreadable_records_are_errors_and_the_rows_after_them_are_read() -> None:
    text = "\n".join(
        ['{"member_id": "a"}', "not json", "[1]", '{"member_id": "b", "colour": "red"}', '{"member_id": "c"}']
    )
    out = parsed("jsonl", text)
    assert [(r.row, r.field if isinstance(r, RowError) else "ok") for r in out] == [
        (1, "ok"), (2, "row"), (3, "row"), (4, "colour"), (5, "ok"),
    ]  # fmt: skip


def test_a_csv_with_unknown_columns_or_a_short_row() -> None:
    (header,) = parsed("csv", "member_id,colour\nm1,red\n")
    assert isinstance(header, RowError) and header.field == "header"
    short, good = parsed("csv", "member_id,tier\nm1\nm2,gold\n")
    assert isinstance(short, RowError) and (short.row, short.field) == (2, "row")
    assert isinstance(good, ImportRow) and good.row == 3


def test_a_row_beyond_the_size_limit_is_refused() -> None:
    (big,) = parsed("jsonl", json.dumps({"member_id": "m1", "tier": "x" * MAX_ROW_CHARS}))
    assert isinstance(big, RowError) and big.field == "row"


def test_times_alone_are_dates_in_the_program_zone() -> None:
    assert parse_time("2026-03-01", SH) == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert parse_time("2026-03-31", SH, end_of_day=True) == datetime(2026, 3, 31, 16, tzinfo=UTC)
    assert parse_time("2026-03-01T10:00:00+08:00", SH) == datetime(2026, 3, 1, 2, tzinfo=UTC)
