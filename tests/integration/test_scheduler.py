"""On a real-clock program, due work runs by itself: the scheduler ticks members whose next due moment passed.

The clock is injected and moved by hand; the test calls one scheduler pass instead of waiting for the thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger.application.clock import ManualClock
from ledger.application.scheduler import Scheduler
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import Refusal

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def setup(store_url: str) -> Iterator[tuple[LedgerApp, ManualClock]]:
    clock = ManualClock(START)
    app = build_app(Settings(store_url=store_url, reference_program=False), clock=clock)
    app.create_program("real", "Real", reference_document(), "real", None, "c")
    app.enroll("real", "m1", [("card_number", "1")], None, "e")
    app.execute(cmd.Envelope("real", cmd.AdjustPoints("m1", 500, "GOODWILL", "opening", "op"), "a"))
    yield app, clock
    app.close()


def test_an_open_hold_times_out_by_itself(setup: tuple[LedgerApp, ManualClock]) -> None:
    app, clock = setup
    app.execute(cmd.Envelope("real", cmd.HoldPoints("m1", "h1", "o1", 40, 100_000), "h"))
    scheduler = Scheduler(app)
    clock.set(START + timedelta(minutes=14))
    assert scheduler.run_pass() == {}
    assert app.store.read_stream("member-real-m1")[-1].type == "PointsHeld"
    clock.set(START + timedelta(minutes=15, seconds=1))
    ran = scheduler.run_pass()
    assert ran["real"]["holds_released"] == 1
    last = app.store.read_stream("member-real-m1")[-1]
    assert last.type == "HoldReleased" and b'"expired"' in last.payload
    with pytest.raises(Refusal) as refused:
        app.execute(cmd.Envelope("real", cmd.CommitHold("m1", "h1"), "commit"))
    assert refused.value.reason == "HOLD_EXPIRED"


def test_monthly_grants_run_without_the_member_doing_anything(setup: tuple[LedgerApp, ManualClock]) -> None:
    app, clock = setup
    before = len(app.store.read_stream("member-real-m1"))
    clock.set(datetime(2026, 3, 15, 1, 0, tzinfo=UTC))  # 09:00 on the 15th in Asia/Shanghai: member day
    ran = Scheduler(app).run_pass()
    assert ran["real"]["members_ticked"] == 1
    types = [e.type for e in app.store.read_stream("member-real-m1")[before:]]
    assert "EntitlementGranted" in types
    assert Scheduler(app).run_pass() == {}, "a second pass finds nothing due"
