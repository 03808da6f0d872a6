"""After a merge, the merged-away member's channel identities find the surviving member, live and after a rebuild."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.entrypoints.rebuild import rebuild_projections

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def wired(store_url: str) -> Iterator[Wired]:
    w = build(Settings(store_url=store_url, reference_program=False), clock=ManualClock(START))
    ledger = w.app
    ledger.create_program("merge", "Merge", reference_document(), "test", START, "c")
    ledger.enroll("merge", "keep", [("card_number", "K-1")], None, "e1")
    ledger.enroll("merge", "dup", [("card_number", "D-1")], None, "e2")
    ledger.execute(cmd.Envelope("merge", cmd.MergeMembers("keep", "dup"), "m"))
    yield w
    ledger.close()


def test_source_card_finds_the_survivor(wired: Wired) -> None:
    app = wired.app
    assert app.lookup("merge", "card_number", "D-1") == "keep"
    assert app.lookup("merge", "card_number", "K-1") == "keep"
    assert app.verify_member("merge", "keep").ok
    rebuild_projections(app, wired.backend)
    assert app.lookup("merge", "card_number", "D-1") == "keep"
