"""ImportService.ImportMembers over a real server (SQLite and PostgreSQL) with real keys: rows streamed in through
the Python client, bad rows reported and never blocking the good ones, a re-sent stream importing nothing
twice, a dry run writing nothing, the imported balance and lots as the API shows them, roles."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import grpc
import pytest

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient
from ledger.testing.server import create_key
from loyalty.v1 import common_pb2, import_pb2, ledger_pb2, member_pb2, query_pb2
from tests.e2e.conftest import CST, ROOT, START, Program, ts

pytestmark = pytest.mark.e2e


def rows(n: int) -> list[import_pb2.ImportRow]:
    return [
        import_pb2.ImportRow(
            row=i + 1,
            member_id=f"old-{i}",
            identities=[
                common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value=f"OLD-{i}")
            ],
            tier="gold",
            tier_since=ts(START - timedelta(days=100)),
            lots=[
                import_pb2.OpeningLot(
                    points=100 + i,
                    earned_at=ts(START - timedelta(days=30)),
                    expires_at=ts(datetime(2026, 4, 1, tzinfo=CST)),
                )
            ],
        )
        for i in range(n)
    ]


def client(program: Program, key: str | None = None) -> LoyaltyClient:
    server = program.server
    return LoyaltyClient(server.target, program.program_id, api_key=key or server.api_key, timeout=30)


def test_rows_streamed_in_are_imported_once_with_their_totals(program: Program) -> None:
    with client(program) as c:
        bad = [
            import_pb2.ImportRow(row=901, member_id="bad-1", tier="platinum"),
            import_pb2.ImportRow(
                row=902, member_id="bad-2",
                identities=[common_pb2.ChannelIdentity(kind=common_pb2.IDENTITY_KIND_CARD_NUMBER, value="OLD-0")],
            ),
        ]  # fmt: skip
        good = rows(250)  # two messages of the stream
        dry = c.import_members([*good, *bad], "crm-export", dry_run=True)
        assert (dry.imported, len(dry.errors), dry.dry_run) == (250, 2, True)
        with pytest.raises(LedgerRefusal) as missing:
            c.lookup("OLD-0")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND  # the dry run wrote nothing

        first = c.import_members([*good, *bad], "crm-export")
        points = sum(100 + i for i in range(250))
        assert (first.rows, first.imported, first.already_imported, first.points) == (252, 250, 0, points)
        assert [(m.month, m.points) for m in first.points_by_expiry_month] == [("2026-03", points)]
        assert [(t.tier, t.members) for t in first.tiers] == [("gold", 250)]
        assert [(e.row, e.field, e.reason) for e in first.errors] == [
            (901, "tier", "INVALID_ARGUMENT"),
            (902, "identities", "IDENTITY_TAKEN"),
        ]

        again = c.import_members(good, "crm-export")
        assert (again.imported, again.already_imported, again.points) == (0, 250, points)

        assert c.lookup("OLD-7").member_id == "old-7"
        balance = c.get_balance("old-7")
        assert balance.active == 107
        lots = c.query.ListLots(query_pb2.ListLotsRequest(program_id=program.program_id, member_id="old-7"))
        assert [(lot.source, lot.remaining) for lot in lots.lots] == [(member_pb2.LOT_SOURCE_IMPORTED, 107)]
        tier = c.query.GetTierState(
            query_pb2.GetTierStateRequest(program_id=program.program_id, member_id="old-7")
        )
        assert tier.tier_state.tier == "gold" and tier.tier_state.growth_in_window == 0  # taken as given

    # The lot expires at its given date (the end of March, Shanghai) through the program's own due work.
    program.advance(datetime(2026, 4, 1, tzinfo=CST))
    with client(program) as c:
        assert c.get_balance("old-7").active == 0


def test_a_pos_key_may_not_import_and_another_programs_key_sees_no_program(program: Program) -> None:
    server = program.server
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pos = create_key(server.store_url, program.program_id, "pos", cwd=ROOT, env=env)
    with client(program, pos) as c, pytest.raises(LedgerRefusal) as denied:
        c.import_members(rows(1), "crm-export")
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    other = create_key(server.store_url, "some_other_program", "operator", cwd=ROOT, env=env)
    with client(program, other) as c, pytest.raises(LedgerRefusal) as hidden:
        c.import_members(rows(1), "crm-export")
    assert hidden.value.code == grpc.StatusCode.NOT_FOUND
    operator = create_key(server.store_url, program.program_id, "operator", cwd=ROOT, env=env)
    with client(program, operator) as c:
        assert c.import_members(rows(1), "crm-export").imported == 1


def test_a_stream_that_changes_its_source_is_refused(program: Program) -> None:
    stub = client(program).imports
    messages = [
        import_pb2.ImportMembersRequest(program_id=program.program_id, source="a", rows=rows(1)),
        import_pb2.ImportMembersRequest(program_id=program.program_id, source="b", rows=rows(1)),
    ]
    with pytest.raises(grpc.RpcError) as refused:
        stub.ImportMembers(iter(messages), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "source" in (refused.value.details() or "")


def test_an_enrolled_member_is_a_bad_row(program: Program) -> None:
    with client(program) as c:
        program.server.ledger.EnrollMember(
            ledger_pb2.EnrollMemberRequest(
                program_id=program.program_id, member_id="old-0", idempotency_key=program.key()
            )
        )
        report = c.import_members(rows(2), "crm-export")
        assert report.imported == 1
        assert [(e.row, e.member_id, e.reason) for e in report.errors] == [(1, "old-0", "MEMBER_EXISTS")]
