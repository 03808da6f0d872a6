"""Property test: over random histories, GetTierState, ListEntitlements, ListExchanges, GetHousehold and
LookupMember answer the same from the read models as from the writer, and take no trip through the writer unless
something is due for the member.

Histories mix late sales, refunds, behaviours (referrals among them), paid plans bought and cancelled,
entitlements used, tier overrides, points-mall exchanges and their cancelling, households opened, joined and
left, transfers, a merge and the clock moving by hours to months (reviews, downgrades, grants, overrides ending,
plans lapsing), on a real SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger.application.clock import ManualClock
from ledger.application.member_reads import MemberLookup, MemberView
from ledger.application.service import LedgerApp
from ledger.application.writer import Peek
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import DomainError
from ledger.domain.queries import balance_figures, current_tier
from ledger.domain.standing import household_standing
from ledger.entrypoints.grpc import convert as cv
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "prop"
MEMBERS = ("m1", "m2", "m3")
DEEP = os.environ.get("LEDGER_DEEP_TESTS", "") not in ("", "0")  # `make test-deep`

# A pass takes about 20 s; shrinking a failing history builds a store per attempt and takes minutes (about five
# for a two-step history), beyond the suite's default timeout.
pytestmark = pytest.mark.timeout(900)


def answers(view: MemberView) -> tuple[Any, list[Any]]:
    """The tier state and the entitlements (newest first) as the gRPC edge builds them."""
    ordered = sorted(
        view.state.entitlements.values(), key=lambda e: (e.granted_at, e.entitlement_id), reverse=True
    )
    return (
        cv.tier_state(view.state, view.policy.policy, view.now),
        [cv.entitlement(e, view.policy.policy, view.now) for e in ordered],
    )


def exchanges(view: MemberView) -> list[Any]:
    """The exchanges (newest first) as ListExchanges builds them."""
    out = []
    for x in sorted(view.state.exchanges.values(), key=lambda x: (x.at, x.exchange_id), reverse=True):
        ent = view.state.entitlements.get(x.entitlement_id)
        granted = None if ent is None else cv.entitlement(ent, view.policy.policy, view.now)
        fields = (x.exchange_id, x.reward_id, x.reward_name, x.at, x.points, x.cash_fen)
        out.append((*fields, x.cancelled_at, x.cancel_reason, granted))
    return out


def household(member: MemberView, owner: MemberView | None) -> Any:
    """What GetHousehold answers (None: NOT_IN_HOUSEHOLD)."""
    if owner is None:
        return None
    standing = household_standing(member.state, member.policy.policy, member.now)
    return (member.state.household_of, owner.state.household_members, owner.state.version, standing)


class StandingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.resources = contextlib.ExitStack()
        self.app: LedgerApp = build_app(
            Settings(store_url=self.store_url(), synchronous="OFF", reference_program=False),
            clock=ManualClock(START),
        )
        self.app.create_program(PROGRAM, "prop", reference_document(), "test", START, "create")
        self.n = 0
        self.orders: dict[str, list[str]] = {m: [] for m in MEMBERS}
        self.peeks = 0
        execute = self.app.writer.execute

        def counting(request: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(request, Peek):
                self.peeks += 1
            return execute(request, *args, **kwargs)

        self.app.writer.execute = counting  # type: ignore[method-assign]

    def store_url(self) -> str:
        directory = self.resources.enter_context(tempfile.TemporaryDirectory())
        return f"sqlite:///{Path(directory) / 'l.db'}"

    def teardown(self) -> None:
        self.app.close()
        self.resources.close()

    def _key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def _run(self, command: cmd.MemberCommand, occurred_at: datetime | None = None) -> bool:
        try:
            self.app.execute(cmd.Envelope(PROGRAM, command, self._key(), occurred_at))
        except DomainError:
            return False
        return True

    @initialize()
    def enroll(self) -> None:
        for m in MEMBERS:
            self.app.enroll(PROGRAM, m, [("card_number", f"card-{m}")], None, f"enroll-{m}")

    @rule(member=st.sampled_from(MEMBERS), fen=st.integers(0, 600_000), days_ago=st.integers(0, 10))
    def purchase(self, member: str, fen: int, days_ago: int) -> None:
        order_id = f"O{self.n}"
        line = (OrderLine("l0", "SKU-1", "toys", 1, fen),)
        self._run(
            cmd.RecordPurchase(member, order_id, line, fen), self.app.now(PROGRAM) - timedelta(days=days_ago)
        )
        self.orders[member].append(order_id)

    @rule(
        member=st.sampled_from(MEMBERS),
        behaviour=st.sampled_from(("check_in", "review", "workshop", "referral")),
        invitee=st.sampled_from(MEMBERS),
    )
    def award(self, member: str, behaviour: str, invitee: str) -> None:
        self._run(cmd.AwardPoints(member, behaviour, invitee if behaviour == "referral" else f"ref{self.n}"))

    @rule(member=st.sampled_from(MEMBERS), data=st.data(), fen=st.integers(1, 300_000), whole=st.booleans())
    def refund(self, member: str, data: st.DataObject, fen: int, whole: bool) -> None:
        if self.orders[member]:
            order_id = data.draw(st.sampled_from(self.orders[member]))
            lines = () if whole else (cmd.RefundLine("l0", fen),)
            self._run(cmd.RefundPurchase(member, order_id, f"R{self.n}", lines))

    @rule(member=st.sampled_from(MEMBERS))
    def buy_plan(self, member: str) -> None:
        self._run(cmd.PurchaseMembership(member, f"MS{self.n}", "black_gold", 199_00))

    @rule(member=st.sampled_from(MEMBERS), data=st.data())
    def cancel_plan(self, member: str, data: st.DataObject) -> None:
        plans = sorted(self.app.view(PROGRAM, member).state.memberships)
        if plans:
            self._run(cmd.CancelMembership(member, data.draw(st.sampled_from(plans)), "changed mind"))

    @rule(member=st.sampled_from(MEMBERS), data=st.data(), quantity=st.integers(1, 3))
    def use(self, member: str, data: st.DataObject, quantity: int) -> None:
        ents = sorted(self.app.view(PROGRAM, member).state.entitlements)
        if ents:
            ent = data.draw(st.sampled_from(ents))
            self._run(cmd.ConsumeEntitlement(member, ent, f"U{self.n}", "S1", quantity))

    @rule(
        member=st.sampled_from(MEMBERS),
        tier=st.sampled_from(("silver", "gold", "diamond", "regular")),
        kind=st.sampled_from(("temporary_upgrade", "override")),
        days=st.integers(1, 90),
    )
    def override(self, member: str, tier: str, kind: str, days: int) -> None:
        ends = self.app.now(PROGRAM) + timedelta(days=days)
        self._run(cmd.OverrideTier(member, tier, kind, ends, "property test", "op1"))

    @rule(now=st.integers(0, 9))
    def merge(self, now: int) -> None:
        if now == 0:  # rarely: m3's history ends with it
            self._run(cmd.MergeMembers("m1", "m3"))

    @rule(
        member=st.sampled_from(MEMBERS),
        reward=st.sampled_from(("coupon_20", "home_delivery", "formula_coupon", "nursing_pillow")),
        points=st.integers(0, 3_000),
    )
    def exchange(self, member: str, reward: str, points: int) -> None:
        if points:
            self._run(cmd.AdjustPoints(member, points, "GOODWILL", "for the mall", "op1"))
        self._run(cmd.ExchangePoints(member, f"X{self.n}", reward))

    @rule(member=st.sampled_from(MEMBERS), data=st.data())
    def cancel_exchange(self, member: str, data: st.DataObject) -> None:
        made = sorted(self.app.view(PROGRAM, member).state.exchanges)
        if made:
            self._run(cmd.CancelExchange(member, data.draw(st.sampled_from(made)), "changed mind"))

    @rule(owner=st.sampled_from(MEMBERS), member=st.sampled_from(MEMBERS), leave=st.booleans())
    def household(self, owner: str, member: str, leave: bool) -> None:
        self._run(cmd.CreateHousehold(owner))
        self._run(cmd.LeaveHousehold(member) if leave else cmd.JoinHousehold(member, owner))

    @rule(giver=st.sampled_from(MEMBERS), to=st.sampled_from(MEMBERS), points=st.integers(1, 12_000))
    def transfer(self, giver: str, to: str, points: int) -> None:
        self._run(cmd.TransferPoints(giver, to, f"T{self.n}", points))

    @rule(hours=st.integers(1, 24 * 200))
    def advance(self, hours: int) -> None:
        self.app.advance_clock(PROGRAM, self.app.now(PROGRAM) + timedelta(hours=hours), self._key())

    @invariant()
    def the_read_models_answer_as_the_writer(self) -> None:
        reads = self.app
        now = reads.now(PROGRAM)
        for m in MEMBERS:
            standing = self.app._standing_now(PROGRAM, m)  # type: ignore[misc]
            current = standing is not None and (standing.due_at is None or standing.due_at > now)
            before = self.peeks
            got = answers(reads.standing_view(PROGRAM, m))
            assert (self.peeks == before) == current, (
                "the writer answered with nothing due, or the rows with work due"
            )
            merged = self.app.view(PROGRAM, m).state.merged_into
            looked_up = None if merged else reads.look_up(PROGRAM, "card_number", f"card-{m}")
            view = self.app.view(PROGRAM, m)
            assert got == answers(view)
            assert exchanges(reads.exchanges_view(PROGRAM, m)) == exchanges(view)
            owner_id = view.state.household_of
            owner = None if owner_id is None else self.app.view(PROGRAM, owner_id)
            assert household(*reads.household_views(PROGRAM, m)) == household(view, owner)
            if looked_up is not None:
                s = view.state
                tier = current_tier(s, view.policy.policy, view.now)
                figures = balance_figures(s, view.now)
                assert looked_up == MemberLookup(m, s.merged_into, tier, s.enrolled_at, figures)


StandingMachine.TestCase.settings = settings(
    max_examples=300 if DEEP else 60,
    stateful_step_count=50 if DEEP else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_standing_reads = StandingMachine.TestCase


class PostgresStandingMachine(StandingMachine):
    """The same machine on PostgreSQL: a fresh schema per example."""

    def store_url(self) -> str:
        from ledger.testing.postgres import fresh_schema, require_postgres

        return self.resources.enter_context(fresh_schema(require_postgres()))


PostgresStandingMachine.TestCase.settings = settings(
    max_examples=100 if DEEP else 12,
    stateful_step_count=50 if DEEP else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_standing_reads_on_postgresql = PostgresStandingMachine.TestCase
