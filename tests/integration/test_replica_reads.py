"""Read-model answers on PostgreSQL replicas: judged at the program's time as the other replicas moved it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"


def purchase(order_id: str, fen: int) -> cmd.RecordPurchase:
    return cmd.RecordPurchase("m1", order_id, (OrderLine("l1", "SKU-1", "toys", 1, fen),), fen)


def test_a_replica_answers_with_the_test_clock_another_replica_moved() -> None:
    """Two applications on one PostgreSQL schema: a clock moved on the first is the time the second's read-model
    answer is judged at, without a restart."""
    from ledger.testing.postgres import fresh_schema, require_postgres

    require_postgres()
    with fresh_schema() as url:
        first = build(Settings(store_url=url, reference_program=False), ManualClock(START))
        second = build(Settings(store_url=url, reference_program=False), ManualClock(START))
        try:
            first.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
            first.app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
            first.app.execute(cmd.Envelope(P, purchase("O1", 500_00), "p1"))
            assert (second.app.balance(P, "m1").pending, second.app.balance(P, "m1").active) == (500, 0)
            # the clock moves on the first replica (which runs the due activation there)
            first.app.advance_clock(P, START + timedelta(days=8), "t1")
            got = second.app.balance(P, "m1")
            assert (got.pending, got.active) == (0, 500)
            assert got.as_of == START + timedelta(days=8)
        finally:
            first.app.close()
            second.app.close()
