"""Property tests over random command sequences, through the real write path on a real SQLite file and PostgreSQL.

For any history: replaying the log gives the live state; no lot goes below zero; the balance equals the sum
of the lots; a retried command changes nothing; the projections verify against the log.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import DomainError
from ledger.domain.state import MemberState
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "prop"
MEMBERS = ("m1", "m2")
CATEGORIES = ("infant_formula", "toys", "clothing")
SKUS = ("LS-RICE-CEREAL-01", "SKU-1", "SKU-2")
DEEP = os.environ.get("LEDGER_DEEP_TESTS", "") not in ("", "0")  # `make test-deep`


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.resources = contextlib.ExitStack()
        self.app = build_app(
            Settings(store_url=self.store_url(), synchronous="OFF", reference_program=False),
            clock=ManualClock(START),
        )
        self.app.create_program(PROGRAM, "prop", reference_document(), "test", START, "create")
        self.n = 0
        self.orders: dict[str, list[str]] = {m: [] for m in MEMBERS}
        self.holds: dict[str, list[str]] = {m: [] for m in MEMBERS}
        self.last: tuple[cmd.Envelope, object] | None = None

    def store_url(self) -> str:
        directory = self.resources.enter_context(tempfile.TemporaryDirectory())
        return f"sqlite:///{Path(directory) / 'l.db'}"

    def teardown(self) -> None:
        self.app.close()
        self.resources.close()

    def _key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def _run(self, command: cmd.MemberCommand, occurred_at: datetime | None = None) -> None:
        env = cmd.Envelope(PROGRAM, command, self._key(), occurred_at)
        try:
            result = self.app.execute(env)
        except DomainError:
            return
        self.last = (env, result)

    @initialize()
    def enroll(self) -> None:
        for m in MEMBERS:
            self.app.enroll(PROGRAM, m, [("card_number", f"card-{m}")], None, f"enroll-{m}")

    @rule(
        member=st.sampled_from(MEMBERS),
        lines=st.lists(
            st.tuples(st.sampled_from(SKUS), st.sampled_from(CATEGORIES), st.integers(1, 3), st.integers(0, 200_000)),
            min_size=1,
            max_size=3,
        ),
        days_ago=st.integers(0, 10),
    )
    def purchase(self, member: str, lines: list[tuple[str, str, int, int]], days_ago: int) -> None:
        order_id = f"O{self.n}"
        order_lines = tuple(OrderLine(f"l{i}", sku, cat, q, paid) for i, (sku, cat, q, paid) in enumerate(lines))
        now = self.app.now(PROGRAM)
        self._run(
            cmd.RecordPurchase(member, order_id, order_lines, sum(ln.paid_fen for ln in order_lines)),
            now - timedelta(days=days_ago),
        )
        self.orders[member].append(order_id)

    @rule(member=st.sampled_from(MEMBERS), behaviour=st.sampled_from(("check_in", "review", "workshop", "referral")))
    def award(self, member: str, behaviour: str) -> None:
        self._run(cmd.AwardPoints(member, behaviour, f"ref{self.n}"))

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(1, 3000), total=st.integers(100, 500_000))
    def hold(self, member: str, points: int, total: int) -> None:
        hold_id = f"H{self.n}"
        self._run(cmd.HoldPoints(member, hold_id, f"HO{self.n}", points, total))
        self.holds[member].append(hold_id)

    @rule(member=st.sampled_from(MEMBERS), data=st.data(), part=st.integers(0, 100))
    def commit(self, member: str, data: st.DataObject, part: int) -> None:
        if self.holds[member]:
            hold_id = data.draw(st.sampled_from(self.holds[member]))
            self._run(cmd.CommitHold(member, hold_id, part or None))

    @rule(member=st.sampled_from(MEMBERS), data=st.data())
    def release(self, member: str, data: st.DataObject) -> None:
        if self.holds[member]:
            self._run(cmd.ReleaseHold(member, data.draw(st.sampled_from(self.holds[member]))))

    @rule(member=st.sampled_from(MEMBERS), data=st.data(), fen=st.integers(1, 100_000), whole=st.booleans())
    def refund(self, member: str, data: st.DataObject, fen: int, whole: bool) -> None:
        if self.orders[member]:
            order_id = data.draw(st.sampled_from(self.orders[member]))
            lines = () if whole else (cmd.RefundLine("l0", fen),)
            self._run(cmd.RefundPurchase(member, order_id, f"R{self.n}", lines))

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(-500, 500))
    def adjust(self, member: str, points: int) -> None:
        self._run(cmd.AdjustPoints(member, points, "GOODWILL", "property test", "op1"))

    @rule(days=st.integers(1, 200))
    def advance(self, days: int) -> None:
        self.app.advance_clock(PROGRAM, self.app.now(PROGRAM) + timedelta(days=days), self._key())

    @rule()
    def retry_last(self) -> None:
        if self.last is None:
            return
        env, first = self.last
        before = self.app.store.read_all(0, 1_000_000)
        again = self.app.execute(env)
        assert again.replayed
        assert again.events == first.events  # type: ignore[attr-defined]
        assert self.app.store.read_all(0, 1_000_000) == before, "a retry wrote something"

    def _state(self, member: str) -> MemberState:
        return self.app.view(PROGRAM, member).state

    @invariant()
    def replay_equals_live_state_and_projections_verify(self) -> None:
        for m in MEMBERS:
            report = self.app.verify_member(PROGRAM, m)
            assert report.ok, (report.chain_break, report.mismatches)
            state = self._state(m)
            for lot in state.lots.values():
                assert 0 <= lot.held <= lot.remaining <= lot.amount, lot
            assert state.active + state.pending == sum(lot.remaining for lot in state.lots.values())
            assert (state.active, state.pending) == state.recount(), "running totals drifted from the lots"
            assert state.available >= 0
            assert state.arrears >= 0
            assert state.held == sum(sum(h.allocations.values()) for h in state.holds.values())


LedgerMachine.TestCase.settings = settings(
    max_examples=400 if DEEP else 40, stateful_step_count=60 if DEEP else 30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ledger_invariants = LedgerMachine.TestCase


class PostgresLedgerMachine(LedgerMachine):
    """The same machine on PostgreSQL: a fresh schema per example."""

    def store_url(self) -> str:
        from ledger.testing.postgres import fresh_schema, require_postgres

        return self.resources.enter_context(fresh_schema(require_postgres()))


PostgresLedgerMachine.TestCase.settings = settings(
    max_examples=100 if DEEP else 12, stateful_step_count=60 if DEEP else 30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ledger_invariants_on_postgresql = PostgresLedgerMachine.TestCase
