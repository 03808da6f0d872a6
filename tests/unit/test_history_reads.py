"""ListHistory's pages from the history read model: the same entries as a replay of the stream, page by page.

The history table holds, per event, the balances after it, its points and growth deltas, its order and the tier
in effect after it, so a page is one indexed read by version instead of a fold of the whole stream. Rows
written before those columns existed (``event_id`` NULL) are answered by replaying, until a rebuild.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.service import HistoryPage, LedgerApp
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"


def _line(fen: int, category: str = "toys") -> tuple[OrderLine, ...]:
    return (OrderLine("l1", "SKU-1", category, 1, fen),)


@pytest.fixture
def wired() -> Iterator[Wired]:
    """A member with a varied history: tiers won and overridden, a late sale, a redemption, a refund, a
    behaviour award, a merge, activations and expiries on the clock."""
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    app = w.app
    app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    app.enroll(P, "m1", [("card_number", "C-1")], None, "e1")
    app.enroll(P, "m2", [("card_number", "C-2")], None, "e2")

    def run(command: cmd.MemberCommand, key: str, at: datetime | None = None) -> None:
        app.execute(cmd.Envelope(P, command, key, at))

    run(cmd.RecordPurchase("m1", "O1", _line(2_500_00), 2_500_00), "p1")  # Silver at once (2,500 growth)
    run(cmd.RecordPurchase("m2", "Q1", _line(300_00), 300_00), "q1")
    app.advance_clock(P, START + timedelta(days=8), "t1")  # activations
    run(cmd.HoldPoints("m1", "H1", "O2", 100, 400_00), "h1")
    run(cmd.CommitHold("m1", "H1", None), "c1")
    run(cmd.RecordPurchase("m1", "O2", _line(300_00), 400_00), "p2")
    run(cmd.RecordPurchase("m1", "O3", _line(120_00, "infant_formula"), 120_00), "p3", START + timedelta(days=2))
    run(cmd.AwardPoints("m1", "check_in", ""), "a1")
    run(cmd.OverrideTier("m1", "gold", "temporary_upgrade", START + timedelta(days=40), "vip day", "op1"), "o1")
    run(cmd.RecordPurchase("m1", "O4", _line(3_000_00), 3_000_00), "p4")  # Gold earned (5,800 growth)
    run(cmd.RefundPurchase("m1", "O4", "R1", (cmd.RefundLine("l1", 1_000_00),)), "r1")
    run(cmd.MergeMembers("m1", "m2"), "mg1")
    run(cmd.AdjustPoints("m1", -20_000, "CORRECTION", "double credit", "op1", allow_arrears=True), "adj1")
    run(cmd.AwardPoints("m1", "review", "REV-1"), "a2")  # repays part of the arrears
    app.advance_clock(P, START + timedelta(days=400), "t2")  # reviews, expiries, grants of a year
    yield w
    app.close()


def _pages(app: LedgerApp, size: int, read: Any) -> list[HistoryPage]:
    pages: list[HistoryPage] = []
    through: int | None = None
    while True:
        page = read(P, "m1", through, size)
        pages.append(page)
        if not page.next_through:
            return pages
        through = page.next_through


def test_pages_from_the_read_model_equal_a_replay_of_the_stream(wired: Wired) -> None:
    app = wired.app
    for size in (1, 3, 7, 50, 1000):
        assert _pages(app, size, app.history) == _pages(app, size, app._history_replayed)
    entries = [e for p in _pages(app, 1000, app.history) for e in p.entries]
    assert len(entries) > 20
    tiers = {e.tier_after for e in entries}
    assert {"regular", "silver", "gold"} <= tiers
    assert any(e.growth_delta < 0 for e in entries) and any(e.points_delta < 0 for e in entries)
    assert any(e.order_id == "O3" for e in entries)
    assert any(e.after.arrears > 0 for e in entries)


def test_a_page_is_read_without_replaying_the_stream(wired: Wired, monkeypatch: pytest.MonkeyPatch) -> None:
    app = wired.app
    expected = _pages(app, 5, app.history)

    def no_replay(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("ListHistory replayed the stream")

    monkeypatch.setattr(app, "replay", no_replay)
    assert _pages(app, 5, app.history) == expected


def test_rows_written_before_the_columns_existed_are_answered_by_a_replay(wired: Wired) -> None:
    app = wired.app
    expected = _pages(app, 4, app.history)
    with wired.backend.read_connection() as reader:
        [(path,)] = [(row[2],) for row in reader.execute("PRAGMA database_list") if row[1] == "main"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE history SET event_id = NULL, tier_after = NULL WHERE member_id = 'm1' AND version % 2 = 0")
    assert _pages(app, 4, app.history) == expected


def test_a_token_beyond_the_stream_is_refused(wired: Wired) -> None:
    from ledger.domain.errors import InvalidCommand

    head = _pages(wired.app, 1000, wired.app.history)[0].entries[0].version
    with pytest.raises(InvalidCommand):
        wired.app.history(P, "m1", head + 1, 10)
    with pytest.raises(InvalidCommand):
        wired.app.history(P, "m1", 0, 10)


# -- ListLots from the lot read model --------------------------------------------------------------------------


def _more_lots(app: LedgerApp) -> None:
    """After the fixture's year: an adjustment that repays the arrears and leaves an active lot, and two sales
    whose lots are pending, then a day on (nothing due: the last activation is a week away)."""
    app.execute(cmd.Envelope(P, cmd.AdjustPoints("m1", 30_000, "GOODWILL", "make good", "op1"), "adj2"))
    for i in (1, 2):
        app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", f"N{i}", _line(200_00 * i), 200_00 * i), f"n{i}"))
    app.advance_clock(P, START + timedelta(days=401), "t3")


def _lot_pages(app: LedgerApp, statuses: list[str], size: int) -> list[tuple[list[Any], int, int]]:
    pages, offset = [], 0
    while True:
        page = app.lots(P, "m1", statuses, offset, size)
        pages.append(page)
        offset += len(page[0])
        if not page[0] or offset >= page[1]:
            return pages


@pytest.mark.parametrize("statuses", [[], ["active"], ["expired", "spent"], ["pending", "active"]])
def test_lot_pages_from_the_read_model_equal_the_members_state(
    wired: Wired, statuses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = wired.app
    _more_lots(app)
    for size in (1, 2, 5, 100):
        from_rows = _lot_pages(app, statuses, size)
        with monkeypatch.context() as m:
            m.setattr(app, "_lots_in_debit_order", None)
            from_state = _lot_pages(app, statuses, size)
        assert from_rows == from_state
    everything = _lot_pages(app, [], 100)[0][0]
    assert len(everything) >= 8 and {lot.status for lot in everything} >= {"spent", "active", "pending"}


def test_lots_are_read_without_the_writer_when_nothing_is_due(wired: Wired) -> None:
    app = wired.app
    _more_lots(app)
    expected = _lot_pages(app, [], 3)
    app.writer.stop()
    assert _lot_pages(app, [], 3) == expected


def test_lot_rows_without_their_order_are_answered_from_the_state(wired: Wired) -> None:
    app = wired.app
    _more_lots(app)
    expected = _lot_pages(app, [], 2)
    with wired.backend.read_connection() as reader:
        [(path,)] = [(row[2],) for row in reader.execute("PRAGMA database_list") if row[1] == "main"]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE lot SET seq = NULL WHERE member_id = 'm1' AND lot_id LIKE 'P-%'")
    assert _lot_pages(app, [], 2) == expected
