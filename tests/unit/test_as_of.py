"""A member as of a business time, as known at a recording time, on the in-memory wiring (``memory://``).

The worked cases of docs/finance.md (a late offline sale, a late refund, expiry at the lot's own time), then a
hypothesis state machine over random histories checking what "as of" and "as known at" promise: an answer as
known at K never changes once K has passed, the answer as of now is the live one, a sale counts from its
business time, and the fold never breaks an invariant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.application.as_of import member_as_of
from ledger.application.clock import ManualClock
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from ledger.domain.errors import DomainError, InvalidCommand, NotFound
from ledger.domain.queries import balance_figures
from policies import OrderLine
from tests.budget import UNDER_MUTATION, examples

START = datetime(2026, 2, 20, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"
US = timedelta(microseconds=1)


def local(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC) - timedelta(hours=8)


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
    w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
    w.app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
    yield w
    w.app.close()


def sale(w: Wired, order_id: str, fen: int, at: datetime | None = None) -> None:
    line = OrderLine("l0", "SKU-1", "toys", 1, fen)
    w.app.execute(cmd.Envelope(P, cmd.RecordPurchase("m1", order_id, (line,), fen), f"sale-{order_id}", at))


def points(w: Wired, as_of: datetime | None, known: datetime | None = None) -> tuple[int, int]:
    view = member_as_of(w.app, P, "m1", as_of, known)
    return view.state.pending, view.state.active


def test_a_late_sale_changes_the_past_as_known_today_but_not_as_known_before(wired: Wired) -> None:
    wired.app.advance_clock(P, local(2026, 3, 1), "c1")
    sale(wired, "O1", 100_00)  # 1 March
    wired.app.advance_clock(P, local(2026, 3, 5), "c2")
    sale(wired, "O2", 50_00, local(2026, 2, 28))  # recorded on 5 March for a sale on 28 February
    end_of_feb = local(2026, 3, 1, 0) - US
    assert points(wired, end_of_feb) == (50, 0)  # as of 28 February, as known today
    assert points(wired, end_of_feb, local(2026, 3, 1)) == (0, 0)  # ... as known on 1 March
    assert points(wired, local(2026, 3, 2), local(2026, 3, 1)) == (100, 0)
    assert points(wired, None) == (150, 0)
    # O2 is active 7 days after its business time, whatever day it was recorded; O1 a day later
    wired.app.advance_clock(P, local(2026, 3, 9), "c3")
    assert points(wired, local(2026, 3, 7, 23)) == (100, 50)
    assert points(wired, local(2026, 3, 8, 23)) == (0, 150)


def test_expiry_counts_at_the_lot_s_own_time_even_before_the_log_records_it(wired: Wired) -> None:
    wired.app.execute(cmd.Envelope(P, cmd.AdjustPoints("m1", 700, "GOODWILL", "opening", "op1"), "a1"))
    [lot] = wired.app.view(P, "m1").state.lots.values()
    wired.app.advance_clock(P, lot.expires_at + timedelta(days=3), "c1")
    assert points(wired, lot.expires_at - US) == (0, 700)
    assert points(wired, lot.expires_at) == (0, 0)
    assert member_as_of(wired.app, P, "m1", lot.expires_at, None).state.lifetime_expired == 700
    # As known a day before expiry the log had no LotExpired yet: the lot still expires at its own time.
    known = lot.expires_at - timedelta(days=1)
    assert points(wired, lot.expires_at - US, known) == (0, 700)
    assert points(wired, lot.expires_at, known) == (0, 0)


def test_a_refund_takes_back_from_its_business_time(wired: Wired) -> None:
    sale(wired, "O1", 300_00)
    wired.app.advance_clock(P, START + timedelta(days=10), "c1")
    wired.app.execute(cmd.Envelope(P, cmd.RefundPurchase("m1", "O1", "R1", ()), "r1", START + timedelta(days=9)))
    assert points(wired, START + timedelta(days=8)) == (0, 300)
    assert points(wired, START + timedelta(days=9)) == (0, 0)
    assert points(wired, START + timedelta(days=9), START + timedelta(days=9, hours=23)) == (0, 300)


def test_times_after_the_clock_are_refused_naming_the_field(wired: Wired) -> None:
    with pytest.raises(InvalidCommand) as refused:
        member_as_of(wired.app, P, "m1", START + timedelta(days=1), None)
    assert refused.value.field == "as_of"
    with pytest.raises(InvalidCommand) as refused:
        member_as_of(wired.app, P, "m1", None, START + timedelta(seconds=1))
    assert refused.value.field == "as_known_at"


def test_before_enrolment_the_member_is_not_found(wired: Wired) -> None:
    with pytest.raises(NotFound):
        member_as_of(wired.app, P, "m1", START - US, None)


# -- random histories -----------------------------------------------------------------------------------------

HOURS = st.one_of(st.integers(min_value=1, max_value=24 * 40), st.integers(min_value=24 * 300, max_value=24 * 420))


class AsOfMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = build(Settings(store_url="memory://", reference_program=False), ManualClock(START))
        self.w.app.create_program(P, "Sandbox", reference_document(), "test", START, "create")
        self.w.app.enroll(P, "m1", [("card_number", "C-1")], None, "enroll-m1")
        self.n = 0
        self.orders: dict[str, datetime] = {}
        self.live: list[tuple[datetime, tuple[int, int, int, int], list[tuple[str, int, str]]]] = []
        self.answers: list[tuple[datetime, datetime, tuple[int, int, int, int]]] = []

    def teardown(self) -> None:
        self.w.app.close()

    @property
    def now(self) -> datetime:
        return self.w.app.now(P)

    def key(self) -> str:
        self.n += 1
        return f"k{self.n}"

    def write(self, command: cmd.MemberCommand, at: datetime | None = None) -> None:
        with contextlib.suppress(DomainError):  # a refusal writes nothing; the answers must hold either way
            self.w.app.execute(cmd.Envelope(P, command, self.key(), at))

    @rule(fen=st.integers(min_value=0, max_value=2_000_00), late_hours=st.integers(min_value=0, max_value=24 * 29))
    def purchase(self, fen: int, late_hours: int) -> None:
        order_id = f"O{self.n}"
        at = max(self.now - timedelta(hours=late_hours), START)
        before = set(self.w.app.view(P, "m1").state.orders)
        self.write(cmd.RecordPurchase("m1", order_id, (OrderLine("l0", "SKU-1", "toys", 1, fen),), fen), at)
        if order_id in self.w.app.view(P, "m1").state.orders and order_id not in before:
            self.orders[order_id] = at

    @precondition(lambda self: bool(self.orders))
    @rule(data=st.data(), late_hours=st.integers(min_value=0, max_value=24 * 20), share=st.integers(1, 100))
    def refund(self, data: st.DataObject, late_hours: int, share: int) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        order = self.w.app.view(P, "m1").state.orders[order_id]
        at = max(self.now - timedelta(hours=late_hours), START)
        fen = order.lines["l0"].paid_fen * share // 100
        lines = (cmd.RefundLine("l0", fen),) if share < 100 else ()
        self.write(cmd.RefundPurchase("m1", order_id, f"R{self.n}", lines), at)

    @rule(points=st.integers(min_value=-500, max_value=1_500))
    def adjust(self, points: int) -> None:
        if points:
            self.write(cmd.AdjustPoints("m1", points, "GOODWILL", "random", "op1"))

    @rule(points=st.integers(min_value=1, max_value=400), commit=st.booleans())
    def redeem(self, points: int, commit: bool) -> None:
        hold_id = f"H{self.n}"
        self.write(cmd.HoldPoints("m1", hold_id, f"OH{self.n}", points, 100_000_00))
        if commit:
            self.write(cmd.CommitHold("m1", hold_id, None))

    @rule(hours=HOURS)
    def advance(self, hours: int) -> None:
        view = self.w.app.view(P, "m1")
        lots = sorted((lot.lot_id, lot.remaining, "x" if lot.expired else "a" if lot.activated else "p")
                      for lot in view.state.lots.values())  # fmt: skip
        self.live.append((view.now, _figures(view.state, view.now), lots))
        for t, k, _ in self.answers[-3:]:
            self.answers.append((t, k, _ask(self, t, k)))
        self.answers.append((view.now, view.now, _ask(self, view.now, view.now)))
        self.w.app.advance_clock(P, self.now + timedelta(hours=hours), self.key())

    @invariant()
    def as_of_now_is_the_live_answer(self) -> None:
        view = self.w.app.view(P, "m1")
        folded = member_as_of(self.w.app, P, "m1", None, None)
        assert _figures(folded.state, folded.now) == _figures(view.state, view.now)
        assert folded.state.version == view.state.version  # the stream version the answer reflects
        assert {lot.lot_id: lot.remaining for lot in folded.state.lots.values()} == {
            lot.lot_id: lot.remaining for lot in view.state.lots.values()
        }

    @invariant()
    def an_answer_as_known_at_a_past_time_never_changes(self) -> None:
        for as_of, known, answer in self.answers:
            assert _ask(self, as_of, known) == answer, (as_of, known)

    @invariant()
    def as_of_a_past_moment_as_known_then_is_what_the_ledger_said_then(self) -> None:
        for at, figures, lots in self.live:
            view = member_as_of(self.w.app, P, "m1", at, at)
            assert _figures(view.state, at) == figures
            state_lots = sorted((lot.lot_id, lot.remaining, "x" if lot.expired else "a" if lot.activated else "p")
                                for lot in view.state.lots.values())  # fmt: skip
            assert state_lots == lots

    @invariant()
    def as_of_a_time_after_what_was_known_the_lots_have_still_moved_at_their_own_times(self) -> None:
        for known, _, _ in self.live[-3:]:
            for t in (known + timedelta(days=8), known + timedelta(days=400), self.now):
                if t > self.now:
                    continue
                for lot in member_as_of(self.w.app, P, "m1", t, known).state.lots.values():
                    assert lot.expired or lot.activated or lot.active_at > t, lot
                    assert lot.expired or not lot.activated or lot.remaining == 0 or lot.expires_at > t, lot

    @invariant()
    def a_sale_counts_from_its_business_time_and_the_fold_keeps_its_invariants(self) -> None:
        for order_id, at in self.orders.items():
            lot_id = f"P-{order_id}"
            if lot_id not in self.w.app.view(P, "m1").state.lots:
                continue
            assert lot_id in member_as_of(self.w.app, P, "m1", at, None).state.lots
            if at - US >= START:
                assert lot_id not in member_as_of(self.w.app, P, "m1", at - US, None).state.lots
        for t in (START, START + timedelta(days=8), self.now - timedelta(days=3), self.now):
            if START <= t <= self.now:
                state = member_as_of(self.w.app, P, "m1", t, None).state
                assert (state.active, state.pending) == state.recount()
                assert all(lot.remaining >= 0 and 0 <= lot.held <= lot.remaining for lot in state.lots.values())


def _figures(state: object, at: datetime) -> tuple[int, int, int, int]:
    f = balance_figures(state, at)  # type: ignore[arg-type]
    return f.active, f.pending, f.held, f.arrears


def _ask(m: AsOfMachine, as_of: datetime, known: datetime) -> tuple[int, int, int, int]:
    view = member_as_of(m.w.app, P, "m1", as_of, known)
    return _figures(view.state, as_of)


AsOfMachine.TestCase.settings = settings(
    max_examples=examples(25, deep=200, mutation=3),
    stateful_step_count=examples(25, deep=50, mutation=20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=UNDER_MUTATION,
)
TestAsOfHistories = AsOfMachine.TestCase
