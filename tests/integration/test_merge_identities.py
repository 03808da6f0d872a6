"""After a merge, the merged-away member's channel identities find the surviving member, live and after a rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.application.clock import ManualClock
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.rebuild import rebuild_projections

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LedgerApp]:
    ledger = build_app(Settings(store_url=f"sqlite:///{tmp_path / 'l.db'}", reference_program=False), clock=ManualClock(START))
    ledger.create_program("merge", "Merge", reference_document(), "test", START, "c")
    ledger.enroll("merge", "keep", [("card_number", "K-1")], None, "e1")
    ledger.enroll("merge", "dup", [("card_number", "D-1")], None, "e2")
    ledger.execute(cmd.Envelope("merge", cmd.MergeMembers("keep", "dup"), "m"))
    yield ledger
    ledger.close()


def test_source_card_finds_the_survivor(app: LedgerApp, tmp_path: Path) -> None:
    assert app.lookup("merge", "card_number", "D-1") == "keep"
    assert app.lookup("merge", "card_number", "K-1") == "keep"
    assert app.verify_member("merge", "keep").ok
    rebuild_projections(app, str(tmp_path / "l.db"))
    assert app.lookup("merge", "card_number", "D-1") == "keep"
