"""ImportMembers' streamed rows: the same records as file rows, limits per row and per stream (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.application.import_rows import ImportRow, RowError, parse_row
from ledger.domain.errors import InvalidCommand
from ledger.entrypoints.grpc import import_service
from ledger.entrypoints.grpc.import_service import _Stream, record_of
from ledger.entrypoints.grpc.validation import MAX_REPEATED
from loyalty.v1 import common_pb2, import_pb2, ledger_pb2

SH = ZoneInfo("Asia/Shanghai")


def ts(value: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(value)
    return out


def test_a_streamed_row_reads_as_the_file_row_would() -> None:
    row = import_pb2.ImportRow(
        row=3,
        member_id="m1",
        identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_OPEN_ID, value="o-1")],
        profile=ledger_pb2.PersonalProfile(consent=True, birth_month=4),
        tier="gold",
        tier_since=ts(datetime(2026, 3, 1, tzinfo=UTC)),
        growth=10,
        growth_window_start=ts(datetime(2025, 12, 1, tzinfo=UTC)),
        growth_window_end=ts(datetime(2026, 11, 30, tzinfo=UTC)),
        lots=[import_pb2.OpeningLot(points=5, earned_at=ts(datetime(2026, 1, 1, tzinfo=UTC)),
                                    expires_at=ts(datetime(2027, 1, 1, tzinfo=UTC)))],
        membership=import_pb2.ImportedMembership(
            plan="black_gold", term_start=ts(datetime(2026, 5, 1, tzinfo=UTC)), term_end=ts(datetime(2027, 5, 1, tzinfo=UTC))
        ),
    )  # fmt: skip
    parsed = parse_row(3, record_of(row), SH)
    assert isinstance(parsed, ImportRow)
    assert parsed.identities == (("open_id", "o-1"),)
    assert parsed.profile is not None and parsed.profile.birth_month == 4
    assert parsed.lots[0].expires_at == datetime(2027, 1, 1, tzinfo=UTC)  # an instant is taken as it is
    assert parsed.membership is not None and parsed.membership.term_end == datetime(2027, 5, 1, tzinfo=UTC)
    assert parsed.membership.membership_id == "imported-1"


def test_an_unspecified_identity_kind_is_a_bad_row() -> None:
    row = import_pb2.ImportRow(row=2, member_id="m1", identities=[common_pb2.ChannelIdentity(value="x")])
    bad = parse_row(2, record_of(row), SH)
    assert isinstance(bad, RowError) and bad.field == "identities[0].kind"


def rows_of(stream: _Stream) -> list[tuple[int, object]]:
    return list(stream)


def test_rows_beyond_the_generic_limits_are_bad_rows_not_a_refused_stream() -> None:
    lots = [import_pb2.OpeningLot(points=1)] * (MAX_REPEATED + 1)
    first = import_pb2.ImportMembersRequest(
        program_id="p", source="s",
        rows=[import_pb2.ImportRow(row=1, member_id="m\x01"), import_pb2.ImportRow(row=2, member_id="ok", lots=lots),
              import_pb2.ImportRow(row=0, member_id="zero"), import_pb2.ImportRow(row=4, member_id="fine")],
    )  # fmt: skip
    out = rows_of(_Stream(first, iter(())))
    assert [(n, r.field if isinstance(r, RowError) else "ok") for n, r in out] == [
        (1, "member_id"),
        (2, "lots"),
        (0, "row"),
        (4, "ok"),
    ]


def test_a_stream_that_changes_program_or_goes_past_its_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = [import_pb2.ImportRow(row=1, member_id="a")]
    first = import_pb2.ImportMembersRequest(program_id="p", source="s", rows=one)
    other = import_pb2.ImportMembersRequest(program_id="q", source="s", rows=one)
    with pytest.raises(InvalidCommand) as refused:
        rows_of(_Stream(first, iter([other])))
    assert refused.value.field == "program_id"
    monkeypatch.setattr(import_service, "MAX_ROWS", 2)
    with pytest.raises(InvalidCommand) as over:
        rows_of(_Stream(first, iter([first, first])))
    assert over.value.field == "rows"
