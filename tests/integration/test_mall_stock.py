"""Stock of a points-mall reward on two replicas sharing one PostgreSQL store: many members exchanging the last
units at once through both never take more than the stock.

Each replica has its own writer and its own cache of the reward's stock stream. An exchange appends its unit to
``stock-{program}-{reward}`` in the same append as the member's events, at the stream version it decided on; the
replica that finds the stream moved (``WrongExpectedVersion``) decides again against the new count, and answers
OUT_OF_STOCK once the units are gone.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.application.writer import Contended
from ledger.bootstrap import Settings, build
from ledger.domain import commands as cmd
from ledger.domain.errors import Refusal
from ledger.domain.stock import StockState, decode, evolve_stock
from ledger.domain.streams import stock_stream
from policies import dump_policy, little_sprout

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"
UNITS = 4
MEMBERS = 16

pytestmark = pytest.mark.postgres


def document() -> str:
    policy = little_sprout()
    mall = dict(policy.mall)
    mall["nursing_pillow"] = mall["nursing_pillow"].model_copy(
        update={"stock": UNITS + 2}
    )  # 2 for the warm-up
    return dump_policy(policy.model_copy(update={"mall": mall}))


def test_members_exchanging_the_last_units_through_two_replicas_never_overdraw_the_stock() -> None:
    from ledger.testing.postgres import fresh_schema, require_postgres

    require_postgres()
    with fresh_schema() as url:
        replicas = [
            build(Settings(store_url=url, reference_program=False), ManualClock(START)) for _ in range(2)
        ]
        first = replicas[0].app
        try:
            first.create_program(P, "Sandbox", document(), "test", START, "create")
            for i in range(MEMBERS):
                first.enroll(P, f"m{i}", [("card_number", f"C-{i}")], None, f"enroll-m{i}")
                first.execute(
                    cmd.Envelope(P, cmd.AdjustPoints(f"m{i}", 3_000, "GOODWILL", "opening", "op1"), f"a{i}")
                )
            # Each replica exchanges one unit first, so both hold the stock stream in their cache before the race
            # and the first replica's copy is one unit behind the log.
            for n, w in enumerate(replicas):
                w.app.enroll(P, f"w{n}", [("card_number", f"W-{n}")], None, f"enroll-w{n}")
                w.app.execute(
                    cmd.Envelope(P, cmd.AdjustPoints(f"w{n}", 3_000, "GOODWILL", "opening", "op1"), f"aw{n}")
                )
                w.app.execute(cmd.Envelope(P, cmd.ExchangePoints(f"w{n}", "X1", "nursing_pillow"), f"xw{n}"))
            outcomes: dict[str, str] = {}
            barrier = threading.Barrier(MEMBERS)

            def go(i: int) -> None:
                app = replicas[i % 2].app
                barrier.wait()
                for _attempt in range(10):
                    try:
                        app.execute(
                            cmd.Envelope(P, cmd.ExchangePoints(f"m{i}", "X1", "nursing_pillow"), f"x{i}")
                        )
                        outcomes[f"m{i}"] = "ok"
                        return
                    except Refusal as r:
                        outcomes[f"m{i}"] = r.reason
                        return
                    except Contended:
                        continue  # ABORTED: retried with the same key, as a client does
                outcomes[f"m{i}"] = "contended"

            threads = [threading.Thread(target=go, args=(i,)) for i in range(MEMBERS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes.values()) == ["OUT_OF_STOCK"] * (MEMBERS - UNITS) + ["ok"] * UNITS
            stock = StockState(stock_stream(P, "nursing_pillow"))
            for stored in first.store.read_stream(stock.stream_id):
                evolve_stock(stock, decode(stored.payload))
            assert (stock.taken, stock.net_taken) == (UNITS + 2, UNITS + 2)
            exchanged = [m for m, outcome in outcomes.items() if outcome == "ok"]
            for i in range(MEMBERS):
                state = replicas[1].app.view(P, f"m{i}").state
                took = f"m{i}" in exchanged
                assert ("X1" in state.exchanges) == took
                assert first.verify_member(P, f"m{i}").ok
        finally:
            for w in replicas:
                w.app.close()
