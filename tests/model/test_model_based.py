"""Model-based test: random histories through the real ledger and through ``reference_model``, compared at every step.

The ledger runs in-process on a SQLite file with the reference program on a test clock; the model is the
plain second implementation in ``tests/model/reference_model.py``. After every step the balances by state,
every lot (what remains, what is held, when it activates and expires, its state), the tier, the next review
and the downgrade notice must agree, and so must every command's outcome: success, or the same refusal.

The default budget is small enough for CI; ``LEDGER_DEEP_TESTS=1`` (``make test-deep``) runs many more and
longer histories.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain import program as program_events
from ledger.domain.errors import Conflict, DomainError, InvalidCommand, NotFound, Refusal
from ledger.domain.state import MemberState
from policies import OrderLine, Policy, dump_policy, load_policy
from tests.budget import UNDER_MUTATION, examples
from tests.model.reference_model import (
    TIER_MIN_GROWTH,
    TZ,
    WINDOW_MONTHS,
    MLot,
    ModelRefusal,
    ReferenceModel,
    shift_months,
)

PROGRAM_START = datetime(2026, 1, 20, 2, 0, tzinfo=UTC)
START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "model"
MEMBER = "m1"
CATEGORIES = ("infant_formula", "toys", "clothing")
SKUS = ("LS-RICE-CEREAL-01", "SKU-1", "SKU-2")
BEHAVIOURS = ("check_in", "review", "review_with_photos", "offline_event", "workshop", "referral")

MAX_EXAMPLES = int(os.environ.get("LEDGER_MODEL_EXAMPLES", str(examples(60, deep=500, mutation=6))))
STEPS = int(os.environ.get("LEDGER_MODEL_STEPS", str(examples(40, deep=80, mutation=30))))

LineSpec = tuple[str, str, int, int]  # sku, category, quantity, paid fen

line_specs = st.lists(
    st.tuples(
        st.sampled_from(SKUS),
        st.sampled_from(CATEGORIES),
        st.integers(1, 3),
        st.one_of(st.integers(0, 5_000), st.integers(0, 300_000), st.integers(0, 1_500_000)),
    ),
    min_size=1,
    max_size=3,
)


REFERENCE = reference_document()
_LOADED: dict[str, Policy] = {}
_DUMPED: dict[int, tuple[Policy, str]] = {}


def _load_once(text: str) -> Policy:
    if text not in _LOADED:
        _LOADED[text] = load_policy(text)
    return _LOADED[text]


def _dump_once(policy: Policy) -> str:
    found = _DUMPED.get(id(policy))
    if found is None or found[0] is not policy:
        found = _DUMPED[id(policy)] = (policy, dump_policy(policy))
    return found[1]


def outcome_code(exc: BaseException) -> str:
    """A refusal as the model names it: the reason code, or the kind of what was not found, or the bad field."""
    if isinstance(exc, Refusal):
        return exc.reason
    if isinstance(exc, NotFound):
        return f"NOT_FOUND:{exc.kind}"
    if isinstance(exc, InvalidCommand):
        return f"INVALID:{exc.field}"
    if isinstance(exc, Conflict):
        return "CONFLICT"
    raise exc


LotView = tuple[str, str, int, int, int, datetime, datetime, datetime, str]


def ledger_lots(state: MemberState) -> list[LotView]:
    lots = sorted(state.lots.values(), key=lambda lot: lot.order_key())
    return [
        (
            lot.source,
            lot.order_id or "",
            lot.amount,
            lot.remaining,
            lot.held,
            lot.occurred_at,
            lot.active_at,
            lot.expires_at,
            "expired" if lot.expired else "active" if lot.activated else "pending",
        )
        for lot in lots
    ]


def model_lots(lots: list[MLot]) -> list[LotView]:
    return [
        (
            lot.source,
            lot.order_id or "",
            lot.amount,
            lot.remaining,
            lot.held,
            lot.occurred_at,
            lot.active_at,
            lot.expires_at,
            lot.status(),
        )
        for lot in sorted(lots, key=MLot.key)
    ]


class ModelMachine(RuleBasedStateMachine):
    """Drives the ledger and the model with the same commands and compares them."""

    def __init__(self) -> None:
        super().__init__()
        self.resources = contextlib.ExitStack()
        directory = self.resources.enter_context(tempfile.TemporaryDirectory())
        # Every example starts a program from the same document: parse it once (pure-Python YAML is slow, and
        # shrinking runs hundreds of examples). The program's policy is the same frozen value either way.
        self.resources.enter_context(mock.patch.object(program_events, "load_policy", _load_once))
        self.resources.enter_context(mock.patch.object(program_events, "dump_policy", _dump_once))
        self.app = build_app(
            Settings(store_url=f"sqlite:///{Path(directory) / 'l.db'}", synchronous="OFF", reference_program=False),
            clock=ManualClock(START),
        )
        self.app.create_program(PROGRAM, "model", REFERENCE, "test", PROGRAM_START, "create")
        self.model = ReferenceModel(PROGRAM_START)
        self.n = 0
        self.orders: list[str] = []
        self.checkouts: list[str] = []  # orders being paid with points at a checkout, not yet recorded
        self.holds: list[str] = []
        self.references: list[str] = []
        self.invitees: list[str] = []  # other members, whom referrals name
        self.refund_ids: list[str] = []

    def teardown(self) -> None:
        self.app.close()
        self.resources.close()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _next(self, tag: str) -> str:
        self.n += 1
        return f"{tag}{self.n}"

    @staticmethod
    def _pick(items: list[str], pick: int) -> str | None:
        return items[pick % len(items)] if items else None

    def both(self, command: cmd.MemberCommand, occurred_at: datetime | None, model_step: Callable[[], Any]) -> str:
        """Run ``command`` on the ledger and ``model_step`` on the model; their outcomes must agree."""
        try:
            self.app.execute(cmd.Envelope(PROGRAM, command, self._next("k"), occurred_at))
            got = "ok"
        except DomainError as exc:
            got = outcome_code(exc)
        try:
            model_step()
            want = "ok"
        except ModelRefusal as exc:
            want = exc.code
        assert got == want, f"{type(command).__name__}: the ledger answered {got}, the model {want}"
        self.check()
        return got

    @property
    def now(self) -> datetime:
        return self.model.now

    # -- rules ---------------------------------------------------------------------------------------------

    @initialize()
    def enroll(self) -> None:
        """The member joins at START, some weeks after the program began (so late sales fall under its policy)."""
        self.app.advance_clock(PROGRAM, START, "clock-start")
        self.model.advance(START)
        self.app.enroll(PROGRAM, MEMBER, [("card_number", "card-1")], None, "enroll")
        self.model.enroll(MEMBER)
        self.check()

    @rule(lines=line_specs, days_ago=st.one_of(st.just(0), st.integers(0, 9), st.integers(0, 35)),
          hours_ago=st.integers(0, 23), reuse=st.integers(0, 9), pick=st.integers(0, 100))
    def purchase(self, lines: list[LineSpec], days_ago: int, hours_ago: int = 0, reuse: int = 1, pick: int = 0) -> None:
        """A sale, possibly recorded late (offline), now and then under an order id already recorded."""
        order_id = self._pick(self.orders, pick) if reuse == 0 and self.orders else self._next("O")
        assert order_id is not None
        at = self.now - timedelta(days=days_ago, hours=hours_ago if days_ago else 0)
        self._purchase(order_id, lines, at, 0)

    def _purchase(self, order_id: str, lines: list[LineSpec], at: datetime, points_paid: int) -> str:
        order_lines = tuple(OrderLine(f"l{i}", sku, cat, q, paid) for i, (sku, cat, q, paid) in enumerate(lines))
        total = sum(ln.paid_fen for ln in order_lines) + points_paid
        outcome = self.both(
            cmd.RecordPurchase(MEMBER, order_id, order_lines, total, points_paid),
            at,
            lambda: self.model.purchase(
                MEMBER, order_id, [(ln.line_id, ln.sku, ln.category, ln.quantity, ln.paid_fen) for ln in order_lines], at
            ),
        )
        if outcome == "ok" and order_id not in self.orders:
            self.orders.append(order_id)
        return outcome

    @rule(behaviour=st.sampled_from(BEHAVIOURS), reuse=st.integers(0, 4), pick=st.integers(0, 100),
          days_ago=st.one_of(st.just(0), st.integers(0, 3)))
    def award(self, behaviour: str, reuse: int = 1, pick: int = 0, days_ago: int = 0) -> None:
        """A behaviour; a referral mostly names one of the invitees (a member, maybe with a purchase)."""
        if behaviour == "referral" and self.invitees and reuse:
            reference: str | None = self._pick(self.invitees, pick)
        else:
            reference = self._pick(self.references, pick) if reuse == 0 and self.references else self._next("ref")
        assert reference is not None
        self.references.append(reference)
        at = self.now - timedelta(days=days_ago)
        self.both(cmd.AwardPoints(MEMBER, behaviour, reference), at,
                  lambda: self.model.award(MEMBER, behaviour, reference, at))

    @rule(buys=st.booleans(), days_ago=st.integers(0, 3))
    def invite(self, buys: bool, days_ago: int = 0) -> None:
        """Another member joins, the one a referral names; ``buys``: with a first purchase ``days_ago`` days ago."""
        invitee = self._next("inv")
        self.app.enroll(PROGRAM, invitee, [], None, self._next("k"))
        self.model.enroll(invitee)
        if buys:
            at = self.now - timedelta(days=days_ago)
            order_lines = (OrderLine("l0", "SKU-1", "toys", 1, 5_000),)
            self.both(cmd.RecordPurchase(invitee, "first", order_lines, 5_000), at,
                      lambda: self.model.purchase(invitee, "first", [("l0", "SKU-1", "toys", 1, 5_000)], at))
        self.invitees.append(invitee)

    @rule(points=st.one_of(st.integers(1, 300), st.integers(1, 5_000)), share=st.integers(3, 40),
          same_order=st.integers(0, 3), pick=st.integers(0, 100), portion=st.integers(0, 4))
    def hold(self, points: int, share: int = 10, same_order: int = 1, pick: int = 0, portion: int = 0) -> None:
        """Hold points at a checkout: the order total is ``points * share`` fen (10: exactly a 10% cap).
        ``portion`` 1..4 holds that many quarters of what is available instead of ``points``."""
        if portion:
            points = max(1, self.model.member(MEMBER).available * portion // 4)
        existing = self._pick(self.checkouts, pick) if same_order == 0 else None
        order_id = existing or self._next("C")
        hold_id = self._next("H")
        total = points * share
        outcome = self.both(cmd.HoldPoints(MEMBER, hold_id, order_id, points, total), None,
                            lambda: self.model.hold(MEMBER, hold_id, order_id, points, total))
        if outcome == "ok":
            self.holds.append(hold_id)
            if order_id not in self.checkouts:
                self.checkouts.append(order_id)

    def _hold_id(self, pick: int, stale: int) -> str:
        """Mostly an open hold; with ``stale == 0`` any hold ever opened (committed, released, timed out)."""
        open_holds = [h for h in self.holds if h in self.model.member(MEMBER).holds]
        return self._pick(open_holds if stale and open_holds else self.holds, pick) or "H-none"

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100), part=st.one_of(st.just(0), st.integers(0, 400)), stale=st.integers(0, 3))
    def commit(self, pick: int = 0, part: int = 0, stale: int = 1) -> None:
        """Commit a hold (all of it, or ``part`` points)."""
        hold_id = self._hold_id(pick, stale)
        points = part or None
        self.both(cmd.CommitHold(MEMBER, hold_id, points), None, lambda: self.model.commit(MEMBER, hold_id, points))

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 100), stale=st.integers(0, 3))
    def release(self, pick: int = 0, stale: int = 1) -> None:
        hold_id = self._hold_id(pick, stale)
        self.both(cmd.ReleaseHold(MEMBER, hold_id), None, lambda: self.model.release(MEMBER, hold_id))

    @precondition(lambda self: self.checkouts)
    @rule(lines=line_specs, pick=st.integers(0, 100))
    def pay_checkout(self, lines: list[LineSpec], pick: int = 0) -> None:
        """Record the sale of a checkout order, with the points its committed holds paid."""
        order_id = self._pick(self.checkouts, pick)
        if order_id is None:
            return
        payments = self.model.member(MEMBER).payments.get(order_id, [])
        if self._purchase(order_id, lines, self.now, sum(p.points for p in payments)) == "ok":
            self.checkouts.remove(order_id)

    @precondition(lambda self: self.orders)
    @rule(pick=st.integers(0, 100), whole=st.booleans(), line=st.integers(0, 2),
          fen=st.one_of(st.integers(1, 2_000), st.integers(1, 300_000)), reuse=st.integers(0, 9),
          rpick=st.integers(0, 100), paid_with_points=st.booleans(), eighths=st.integers(0, 8))
    def refund(self, pick: int = 0, whole: bool = True, line: int = 0, fen: int = 1, reuse: int = 1,
               rpick: int = 0, paid_with_points: bool = False, eighths: int = 0) -> None:
        """Refund a whole order or ``fen`` of one of its lines (possibly more than is left: refused);
        ``eighths`` 1..8 refunds that many eighths of what is left of the line instead of ``fen``;
        ``paid_with_points`` prefers an order that points paid for."""
        payments = self.model.member(MEMBER).payments
        paid = [o for o in self.orders if payments.get(o)]
        order_id = self._pick(paid if paid_with_points and paid else self.orders, pick)
        if order_id is None:
            return
        refund_id = self._pick(self.refund_ids, rpick) if reuse == 0 and self.refund_ids else self._next("R")
        assert refund_id is not None
        self.refund_ids.append(refund_id)
        recorded = self.model.member(MEMBER).orders[order_id].lines
        line = line % len(recorded)
        left = recorded[f"l{line}"].paid - recorded[f"l{line}"].refunded
        if eighths and left >= 8:
            fen = left * eighths // 8
        lines = () if whole else (cmd.RefundLine(f"l{line}", fen),)
        model_lines = None if whole else [(f"l{line}", fen)]
        self.both(cmd.RefundPurchase(MEMBER, order_id, refund_id, lines), None,
                  lambda: self.model.refund(MEMBER, order_id, refund_id, model_lines))

    @rule(points=st.integers(-3_000, 3_000).filter(bool), portion=st.integers(0, 3))
    def adjust(self, points: int, portion: int = 0) -> None:
        """A manual credit or debit; ``portion`` 1..3 debits that many quarters of what is available instead."""
        if portion and self.model.member(MEMBER).available >= 4:
            points = -(self.model.member(MEMBER).available * portion // 4)
        self.both(cmd.AdjustPoints(MEMBER, points, "GOODWILL", "model test", "op1"), None,
                  lambda: self.model.adjust(MEMBER, points))

    @rule()
    def spend_everything(self) -> None:
        """An operator debit of everything available (so that later refunds run into arrears)."""
        available = self.model.member(MEMBER).available
        points = -available if available else -1
        self.both(cmd.AdjustPoints(MEMBER, points, "REDEEMED_OFFLINE", "model test", "op1"), None,
                  lambda: self.model.adjust(MEMBER, points))

    @rule(minutes=st.one_of(
        st.integers(1, 20),
        st.integers(1, 60 * 24 * 45),
        st.integers(1, 60 * 24 * 200),
        st.integers(60 * 24 * 300, 60 * 24 * 420),
    ))
    def advance(self, minutes: int, to: datetime | None = None) -> None:
        """Move the test clock: minutes (hold time-outs), weeks (activation, member day), months (expiry, reviews)."""
        to = to or self.now + timedelta(minutes=minutes)
        self.app.advance_clock(PROGRAM, to, self._next("clock"))
        self.model.advance(to)
        self.check()

    @rule(kind=st.sampled_from(("activation", "expiry", "hold", "review", "member_day", "month")),
          offset=st.one_of(st.sampled_from((-1, 0, 1)), st.integers(-20, 2)))
    def advance_to(self, kind: str, offset: int) -> None:
        """Move the clock to ``offset`` minutes around the next moment of a kind: a pending lot activating,
        an active lot expiring, a hold timing out, a tier review or downgrade, the next 15th, the next 1st
        (local midnight). The boundaries are where off-by-one rules show."""
        m = self.model.member(MEMBER)
        moments: list[datetime] = []
        if kind == "activation":
            moments = [lot.active_at for lot in m.lots if not lot.active]
        elif kind == "expiry":
            moments = [lot.expires_at for lot in m.lots if lot.active and not lot.expired and lot.remaining]
        elif kind == "hold":
            moments = [h.expires_at for h in m.holds.values()]
        elif kind == "review":
            moments = [t for t in (m.next_review, m.notice[1] if m.notice else None) if t is not None]
        else:
            day = self.now.astimezone(TZ).date()
            while True:
                day += timedelta(days=1)
                if day.day == (15 if kind == "member_day" else 1):
                    break
            moments = [datetime(day.year, day.month, day.day, tzinfo=TZ).astimezone(UTC)]
        later = [t + timedelta(minutes=offset) for t in moments if t + timedelta(minutes=offset) > self.now]
        if later:
            self.advance(minutes=0, to=min(later))

    @rule(over=st.sampled_from((-1, 0, 0, 1)), days_ago=st.sampled_from((0, 0, 3)))
    def reach_next_tier(self, over: int, days_ago: int) -> None:
        """A sale that brings the growth in the window to exactly the next tier's threshold (or one off)."""
        m = self.model.member(MEMBER)
        growth = m.growth_in_window(self.now)
        above = [g for g in TIER_MIN_GROWTH.values() if g > growth]
        if not above:
            return
        need = min(above) - growth + over
        if need > 0:
            self._purchase(self._next("O"), [("SKU-2", "toys", 1, need * 100)], self.now - timedelta(days=days_ago), 0)

    # -- the comparison ------------------------------------------------------------------------------------

    def check(self) -> None:
        view = self.app.view(PROGRAM, MEMBER)
        state = view.state
        m = self.model.member(MEMBER)
        assert view.now == self.model.now
        balances = (state.pending, state.active, state.held, state.available, state.arrears)
        assert balances == (m.pending, m.active, m.held, m.available, m.arrears), (
            "balances (pending, active, held, available, arrears): "
            f"ledger {balances}, model {(m.pending, m.active, m.held, m.available, m.arrears)}"
        )
        assert ledger_lots(state) == model_lots(m.lots), "lots differ"
        assert sorted((h.hold_id, h.points, h.expires_at) for h in state.holds.values()) == sorted(
            (h.hold_id, h.points, h.expires_at) for h in m.holds.values()
        ), "open holds differ"
        assert state.tier == m.tier, f"tier: ledger {state.tier}, model {m.tier}"
        assert state.next_review_at == m.next_review, f"next review: ledger {state.next_review_at}, model {m.next_review}"
        notice = state.downgrade_notice
        assert (None if notice is None else (notice.issued_at, notice.downgrade_at)) == m.notice, "downgrade notice"
        window = state.growth_between(shift_months(self.model.now, -WINDOW_MONTHS), self.model.now)
        assert window == m.growth_in_window(self.model.now), "growth in the window"


ModelMachine.TestCase.settings = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=UNDER_MUTATION,
)
test_ledger_agrees_with_the_reference_model = ModelMachine.TestCase
