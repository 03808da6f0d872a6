"""The points mall on the in-memory wiring: exchanges spend points and stock in one decision, refusals name their
rule, cancellations give points back to their lots (or as a new lot when theirs expired) and the unit to stock.

The program runs on a test clock moved by hand (``ManualClock`` and ``advance_clock``): nothing here sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger.application.clock import ManualClock
from ledger.application.results import CommandResult
from ledger.bootstrap import Settings, Wired, build
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.errors import Conflict, InvalidCommand, NotFound, Refusal
from ledger.domain.stock import StockState, decode, evolve_stock
from ledger.domain.streams import stock_stream
from policies import dump_policy, little_sprout
from tests.unit.writer_groups import in_one_group

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai
P = "sandbox"


def document(**stock: int) -> str:
    """The reference program with the given rewards' stock changed (to exhaust it in a test)."""
    policy = little_sprout()
    mall = {
        code: (r.model_copy(update={"stock": stock[code]}) if code in stock else r)
        for code, r in policy.mall.items()
    }
    return dump_policy(policy.model_copy(update={"mall": mall}))


def wire(doc: str, members: int = 1, at: datetime = START) -> Wired:
    w = build(Settings(store_url="memory://", reference_program=False), ManualClock(at))
    w.app.create_program(P, "Sandbox", doc, "test", at, "create")
    for i in range(1, members + 1):
        w.app.enroll(P, f"m{i}", [("card_number", f"C-{i}")], None, f"enroll-m{i}")
    return w


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = wire(document())
    yield w
    w.app.close()


def run(w: Wired, command: cmd.MemberCommand, key: str, occurred_at: datetime | None = None) -> Any:
    return w.app.execute(cmd.Envelope(P, command, key, occurred_at))


def credit(w: Wired, points: int, key: str, member: str = "m1") -> None:
    run(w, cmd.AdjustPoints(member, points, "GOODWILL", "opening", "op1"), key)


def exchange(w: Wired, exchange_id: str, reward: str, member: str = "m1", key: str | None = None) -> Any:
    return run(w, cmd.ExchangePoints(member, exchange_id, reward), key or f"x-{member}-{exchange_id}")


def refused(w: Wired, command: cmd.MemberCommand, key: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        run(w, command, key)
    return caught.value


def stock(w: Wired, reward: str) -> StockState:
    state = StockState(stock_stream(P, reward))
    for stored in w.app.store.read_stream(state.stream_id):
        evolve_stock(state, decode(stored.payload))
    return state


def available(w: Wired, member: str = "m1") -> int:
    return w.app.view(P, member).state.available


# -- exchanging -----------------------------------------------------------------------------------------------


def test_an_exchange_spends_the_soonest_expiring_lots_takes_a_unit_and_grants_the_gift(wired: Wired) -> None:
    credit(wired, 2_000, "a1")
    wired.app.advance_clock(P, START + timedelta(days=40), "clock-1")  # the second lot expires a month later
    credit(wired, 2_000, "a2")
    result = exchange(wired, "X1", "nursing_pillow")
    exchanged, granted = result.events
    assert isinstance(exchanged, ev.PointsExchanged) and isinstance(granted, ev.EntitlementGranted)
    lots = wired.app.view(P, "m1").state.lots
    first, second = sorted(lots.values(), key=lambda lot: lot.order_key())
    assert [(d.lot_id, d.points) for d in exchanged.debits] == [(first.lot_id, 2_000), (second.lot_id, 1_000)]
    assert available(wired) == 1_000
    assert stock(wired, "nursing_pillow").net_taken == 1
    assert granted.kind == "gift" and granted.source == "exchange:X1" and granted.quota_total == 1
    assert exchanged.entitlement_id == granted.entitlement_id
    assert wired.app.verify_member(P, "m1").ok


def test_an_exchange_with_unlimited_stock_writes_no_stock_stream(wired: Wired) -> None:
    credit(wired, 1_500, "a1")
    exchanged = exchange(wired, "X1", "coupon_20").events[0]
    assert (
        exchanged.stock_stream is None and wired.app.store.stream_version(stock_stream(P, "coupon_20")) == 0
    )
    ent = wired.app.view(P, "m1").state.entitlements[exchanged.entitlement_id]
    assert (ent.value_fen, ent.valid_until) == (2_000, START + timedelta(days=30))


def test_a_retry_answers_the_first_exchange_once_and_the_key_with_another_reward_is_refused(
    wired: Wired,
) -> None:
    credit(wired, 5_000, "a1")
    first = exchange(wired, "X1", "nursing_pillow", key="k1")
    log = wired.app.store.read_all(0, 10_000)
    again = exchange(wired, "X1", "nursing_pillow", key="k1")
    assert again.replayed and again.events == first.events
    assert wired.app.store.read_all(0, 10_000) == log
    assert stock(wired, "nursing_pillow").net_taken == 1 and available(wired) == 2_000
    with pytest.raises(Conflict):
        exchange(wired, "X1", "coupon_20", key="k1")
    with pytest.raises(Conflict):  # the exchange id is part of the request too
        exchange(wired, "X2", "nursing_pillow", key="k1")
    assert stock(wired, "nursing_pillow").net_taken == 1 and available(wired) == 2_000


def test_an_exchange_of_the_last_unit_retried_after_the_stock_ran_out_is_still_answered_once() -> None:
    w = wire(document(nursing_pillow=1), members=2)
    try:
        credit(w, 5_000, "a1")
        credit(w, 5_000, "a2", member="m2")
        first = exchange(w, "X1", "nursing_pillow", key="k1")
        assert refused(w, cmd.ExchangePoints("m2", "X1", "nursing_pillow"), "k2").reason == "OUT_OF_STOCK"
        again = exchange(w, "X1", "nursing_pillow", key="k1")
        assert again.replayed and again.events == first.events and again.version == first.version
        assert stock(w, "nursing_pillow").net_taken == 1 and available(w) == 2_000
    finally:
        w.app.close()


def test_in_one_group_an_exchange_retry_is_answered_once_and_the_key_with_another_reward_refused(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    credit(wired, 5_000, "a1")
    wired.app.enroll(P, "m2", [("card_number", "C-2")], None, "enroll-m2")
    x = cmd.ExchangePoints("m1", "X1", "nursing_pillow")
    requests = [
        cmd.Envelope(P, x, "k1"),
        cmd.Envelope(P, x, "k1"),
        cmd.Envelope(P, cmd.ExchangePoints("m1", "X1", "coupon_20"), "k1"),
    ]
    answered, again, other = in_one_group(wired, monkeypatch, requests, P, blocker="m2")
    assert isinstance(answered, CommandResult) and isinstance(again, CommandResult)
    assert (again.events, again.version, again.replayed) == (answered.events, answered.version, True)
    assert isinstance(other, Conflict)
    assert stock(wired, "nursing_pillow").net_taken == 1 and available(wired) == 2_000


def test_an_exchange_id_used_twice_is_refused(wired: Wired) -> None:
    credit(wired, 5_000, "a1")
    exchange(wired, "X1", "coupon_20", key="k1")
    assert refused(wired, cmd.ExchangePoints("m1", "X1", "coupon_20"), "k2").reason == "EXCHANGE_EXISTS"


def test_an_unknown_reward_is_an_invalid_argument_naming_the_field(wired: Wired) -> None:
    credit(wired, 5_000, "a1")
    with pytest.raises(InvalidCommand) as caught:
        exchange(wired, "X1", "no_such_reward")
    assert caught.value.field == "reward_id"


# -- one refusal per reason code ------------------------------------------------------------------------------


def test_insufficient_points_is_refused_and_nothing_moves(wired: Wired) -> None:
    credit(wired, 2_999, "a1")
    r = refused(wired, cmd.ExchangePoints("m1", "X1", "nursing_pillow"), "x1")
    assert r.reason == "INSUFFICIENT_POINTS" and r.metadata["available"] == "2999"
    assert available(wired) == 2_999 and stock(wired, "nursing_pillow").version == 0


def test_the_per_member_limit_per_month_is_refused_and_resets_next_month(wired: Wired) -> None:
    credit(wired, 10_000, "a1")
    exchange(wired, "X1", "coupon_20")
    exchange(wired, "X2", "coupon_20")
    r = refused(wired, cmd.ExchangePoints("m1", "X3", "coupon_20"), "x3")
    assert r.reason == "EXCHANGE_LIMIT_REACHED"
    assert (r.metadata["period"], r.metadata["limit"], r.metadata["used"]) == ("MONTH", "2", "2")
    wired.app.advance_clock(P, datetime(2026, 3, 31, 16, 0, tzinfo=UTC), "clock-1")  # 1 April local
    exchange(wired, "X3", "coupon_20")


def test_the_per_member_limit_per_year_counts_the_local_calendar_year(wired: Wired) -> None:
    credit(wired, 10_000, "a1")
    exchange(wired, "X1", "nursing_pillow")
    wired.app.advance_clock(P, datetime(2026, 12, 31, 15, 59, tzinfo=UTC), "clock-1")  # 23:59 31 Dec local
    credit(wired, 3_000, "a2")
    assert (
        refused(wired, cmd.ExchangePoints("m1", "X2", "nursing_pillow"), "x2").reason
        == "EXCHANGE_LIMIT_REACHED"
    )
    wired.app.advance_clock(P, datetime(2026, 12, 31, 16, 0, tzinfo=UTC), "clock-2")  # 1 Jan 2027 local
    exchange(wired, "X2", "nursing_pillow")


def test_a_cancelled_exchange_does_not_count_towards_the_limit(wired: Wired) -> None:
    credit(wired, 10_000, "a1")
    exchange(wired, "X1", "formula_coupon")
    run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    exchange(wired, "X2", "formula_coupon")
    assert (
        refused(wired, cmd.ExchangePoints("m1", "X3", "formula_coupon"), "x3").reason
        == "EXCHANGE_LIMIT_REACHED"
    )


def test_a_late_exchange_counts_towards_the_limit_of_the_month_of_its_business_time(wired: Wired) -> None:
    credit(wired, 20_000, "a1")
    exchange(wired, "X1", "coupon_20")
    exchange(wired, "X2", "coupon_20")  # March's two
    wired.app.advance_clock(P, datetime(2026, 4, 2, 2, 0, tzinfo=UTC), "clock-1")  # 2 April, 10:00 local
    march_31 = datetime(2026, 3, 31, 2, 0, tzinfo=UTC)
    with pytest.raises(Refusal) as caught:
        run(wired, cmd.ExchangePoints("m1", "X3", "coupon_20"), "x3", occurred_at=march_31)
    assert (caught.value.reason, caught.value.metadata["used"]) == ("EXCHANGE_LIMIT_REACHED", "2")
    exchange(wired, "X4", "coupon_20")
    exchange(wired, "X5", "coupon_20")  # April's two: the late refusal did not count, March's do not
    assert (
        refused(wired, cmd.ExchangePoints("m1", "X6", "coupon_20"), "x6").reason == "EXCHANGE_LIMIT_REACHED"
    )


def test_a_reward_for_silver_and_up_is_refused_to_a_regular_member(wired: Wired) -> None:
    credit(wired, 1_000, "a1")
    r = refused(wired, cmd.ExchangePoints("m1", "X1", "home_delivery"), "x1")
    assert (r.reason, r.metadata["tier"], r.metadata["min_tier"]) == (
        "TIER_NOT_ELIGIBLE",
        "regular",
        "silver",
    )
    run(wired, cmd.OverrideTier("m1", "silver", "override", START + timedelta(days=30), "test", "op1"), "o1")
    exchange(wired, "X1", "home_delivery")


def test_the_618_gift_box_is_on_sale_from_1_to_18_june_only(wired: Wired) -> None:
    credit(wired, 20_000, "a1")
    r = refused(wired, cmd.ExchangePoints("m1", "X1", "gift_box_618"), "x1")
    assert r.reason == "OUTSIDE_SALE_WINDOW"
    wired.app.advance_clock(P, datetime(2026, 5, 31, 15, 59, tzinfo=UTC), "clock-0")  # 31 May 23:59 local
    assert (
        refused(wired, cmd.ExchangePoints("m1", "X1", "gift_box_618"), "x0").reason == "OUTSIDE_SALE_WINDOW"
    )
    wired.app.advance_clock(P, datetime(2026, 5, 31, 16, 0, tzinfo=UTC), "clock-1")  # 1 June 00:00 local
    exchange(wired, "X1", "gift_box_618")
    wired.app.advance_clock(P, datetime(2026, 6, 18, 16, 0, tzinfo=UTC), "clock-2")  # 19 June 00:00 local
    assert (
        refused(wired, cmd.ExchangePoints("m1", "X2", "gift_box_618"), "x2").reason == "OUTSIDE_SALE_WINDOW"
    )


def test_the_last_unit_goes_to_one_member_and_the_next_is_out_of_stock() -> None:
    w = wire(document(nursing_pillow=1), members=2)
    try:
        credit(w, 3_000, "a1", "m1")
        credit(w, 3_000, "a2", "m2")
        exchange(w, "X1", "nursing_pillow", member="m1")
        r = refused(w, cmd.ExchangePoints("m2", "X1", "nursing_pillow"), "x2")
        assert (r.reason, r.metadata["stock_left"]) == ("OUT_OF_STOCK", "0")
        assert available(w, "m2") == 3_000
    finally:
        w.app.close()


def test_many_members_exchanging_the_last_units_at_once_never_take_more_than_the_stock() -> None:
    members, units = 12, 5
    w = wire(document(nursing_pillow=units), members=members)
    try:
        for i in range(1, members + 1):
            credit(w, 3_000, f"a{i}", f"m{i}")
        outcomes: dict[str, str] = {}
        barrier = threading.Barrier(members)

        def go(member: str) -> None:
            barrier.wait()
            try:
                exchange(w, "X1", "nursing_pillow", member=member)
                outcomes[member] = "ok"
            except Refusal as r:
                outcomes[member] = r.reason

        threads = [threading.Thread(target=go, args=(f"m{i}",)) for i in range(1, members + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes.values()) == ["OUT_OF_STOCK"] * (members - units) + ["ok"] * units
        assert stock(w, "nursing_pillow").net_taken == units
    finally:
        w.app.close()


# -- cancelling -----------------------------------------------------------------------------------------------


def test_a_cancel_returns_the_points_to_their_lots_with_their_expiry_and_the_unit_to_stock(
    wired: Wired,
) -> None:
    credit(wired, 2_000, "a1")
    wired.app.advance_clock(P, START + timedelta(days=40), "clock-1")
    credit(wired, 2_000, "a2")
    before = {
        lot_id: (lot.remaining, lot.expires_at) for lot_id, lot in wired.app.view(P, "m1").state.lots.items()
    }
    exchange(wired, "X1", "nursing_pillow")
    result = run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    cancelled, revoked = result.events
    assert isinstance(cancelled, ev.ExchangeCancelled) and isinstance(revoked, ev.EntitlementRevoked)
    assert cancelled.relot is None and cancelled.points_returned == 3_000
    state = wired.app.view(P, "m1").state
    assert {lot_id: (lot.remaining, lot.expires_at) for lot_id, lot in state.lots.items()} == before
    assert stock(wired, "nursing_pillow").net_taken == 0 and stock(wired, "nursing_pillow").version == 2
    assert state.entitlements[revoked.entitlement_id].revoked_at is not None
    assert wired.app.verify_member(P, "m1").ok


def test_a_part_whose_lot_expired_comes_back_as_a_new_lot_expiring_30_days_after_the_cancel(
    wired: Wired,
) -> None:
    credit(wired, 1_000, "a1")  # active 10 March 2026: expires at the end of March 2027
    wired.app.advance_clock(P, datetime(2027, 3, 20, 2, 0, tzinfo=UTC), "clock-1")
    credit(wired, 2_000, "a2")
    exchange(wired, "X1", "coupon_20")  # 1,500 points: the 1,000 of the old lot, 500 of the new
    wired.app.advance_clock(P, datetime(2027, 4, 1, 2, 0, tzinfo=UTC), "clock-2")  # the old lot has expired
    cancel_at = datetime(2027, 4, 1, 2, 0, tzinfo=UTC)
    cancelled = run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1").events[0]
    assert [d.points for d in cancelled.returned] == [500]
    assert [d.points for d in cancelled.relot_sources] == [1_000]
    assert cancelled.relot is not None and cancelled.relot.points == 1_000
    assert cancelled.relot.expires_at == cancel_at + timedelta(days=30)
    assert available(wired) == 2_000 + 1_000 - 500 + 500  # 2,000 lot whole again, plus the new 1,000 lot
    assert wired.app.verify_member(P, "m1").ok


def test_a_used_exchange_cannot_be_cancelled(wired: Wired) -> None:
    credit(wired, 5_000, "a1")
    exchanged = exchange(wired, "X1", "nursing_pillow").events[0]
    run(wired, cmd.ConsumeEntitlement("m1", exchanged.entitlement_id, "collect-1", "S-1"), "u1")
    r = refused(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    assert r.reason == "EXCHANGE_ALREADY_USED"
    assert available(wired) == 2_000 and stock(wired, "nursing_pillow").net_taken == 1


def test_an_exchange_is_cancelled_once_and_not_after_its_validity(wired: Wired) -> None:
    credit(wired, 5_000, "a1")
    exchange(wired, "X1", "coupon_20")
    exchange(wired, "X2", "coupon_20")
    run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    assert (
        refused(wired, cmd.CancelExchange("m1", "X1", "again"), "c2").reason == "EXCHANGE_ALREADY_CANCELLED"
    )
    wired.app.advance_clock(P, START + timedelta(days=30), "clock-1")  # the coupon was valid 30 days
    assert refused(wired, cmd.CancelExchange("m1", "X2", "late"), "c3").reason == "EXCHANGE_NOT_CANCELLABLE"
    with pytest.raises(NotFound):
        run(wired, cmd.CancelExchange("m1", "X9", "unknown"), "c4")


# -- operators' stock adjustments -----------------------------------------------------------------------------


def test_an_operator_adjusts_stock_once_per_key_and_never_below_zero() -> None:
    w = wire(document(nursing_pillow=2), members=1)
    try:
        adjust = cmd.AdjustStock("nursing_pillow", 3, "delivery of 3 pillows", "op1")
        first = run(w, adjust, "s1")
        assert (first.extra["stock_left"], first.version) == (5, 1)
        again = run(w, adjust, "s1")
        assert again.replayed and again.extra["stock_left"] == 5 and stock(w, "nursing_pillow").version == 1
        with pytest.raises(Conflict):
            run(w, cmd.AdjustStock("nursing_pillow", 4, "delivery", "op1"), "s1")
        r = refused(w, cmd.AdjustStock("nursing_pillow", -6, "damaged", "op1"), "s2")
        assert (r.reason, r.metadata["stock_left"]) == ("STOCK_BELOW_ZERO", "5")
        run(w, cmd.AdjustStock("nursing_pillow", -5, "damaged in store", "op1"), "s3")
        credit(w, 3_000, "a1")
        assert refused(w, cmd.ExchangePoints("m1", "X1", "nursing_pillow"), "x1").reason == "OUT_OF_STOCK"
        run(w, cmd.AdjustStock("nursing_pillow", 1, "found one", "op1"), "s4")
        exchange(w, "X1", "nursing_pillow")
        [adjusted] = [decode(s.payload) for s in w.app.store.read_stream(stock_stream(P, "nursing_pillow"))][
            :1
        ]
        assert adjusted.type == "StockAdjusted" and (adjusted.operator_id, adjusted.reason) == (
            "op1",
            "delivery of 3 pillows",
        )
    finally:
        w.app.close()


def test_a_stock_adjustment_names_the_field_it_cannot_take(wired: Wired) -> None:
    for command, field in (
        (cmd.AdjustStock("coupon_20", 5, "more", "op1"), "reward_id"),  # unlimited stock
        (cmd.AdjustStock("caviar", 5, "more", "op1"), "reward_id"),
        (cmd.AdjustStock("nursing_pillow", 0, "none", "op1"), "units"),
        (cmd.AdjustStock("nursing_pillow", 5, " ", "op1"), "reason"),
    ):
        with pytest.raises(InvalidCommand) as caught:
            run(wired, command, f"bad-{field}-{command.reward_id}-{command.units}")
        assert caught.value.field == field


def test_every_mall_event_moves_the_liability_by_what_it_changes_of_the_outstanding_points(
    wired: Wired,
) -> None:
    from ledger.domain.evolve import evolve
    from ledger.domain.liability import movement, net, outstanding
    from ledger.domain.state import MemberState
    from ledger.domain.streams import member_stream

    credit(wired, 1_000, "a1")
    wired.app.advance_clock(P, datetime(2027, 3, 20, 2, 0, tzinfo=UTC), "clock-1")
    credit(wired, 2_000, "a2")
    exchange(wired, "X1", "coupon_20")
    wired.app.advance_clock(P, datetime(2027, 4, 1, 2, 0, tzinfo=UTC), "clock-2")  # the first lot expires
    run(wired, cmd.AdjustPoints("m1", -2_000, "CORRECTION", "into arrears", "op1", allow_arrears=True), "a3")
    cancelled = run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1").events[0]
    assert cancelled.relot is not None and cancelled.arrears_repaid > 0  # the new lot repays arrears first
    state = MemberState(program_id=P, member_id="m1")
    for stored in wired.app.store.read_stream(member_stream(P, "m1")):
        event = ev.decode(stored.payload)
        before = outstanding(state)
        moved = net(movement(state, event))
        evolve(state, event)
        assert outstanding(state) - before == moved, event.type


def test_a_cancel_retried_with_its_key_returns_the_points_once(wired: Wired) -> None:
    credit(wired, 5_000, "a1")
    exchange(wired, "X1", "nursing_pillow")
    first = run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    again = run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    assert again.replayed and again.events == first.events
    assert available(wired) == 5_000 and stock(wired, "nursing_pillow").version == 2


def test_a_late_exchange_is_judged_at_its_business_time() -> None:
    """Recorded on 20 June for 18 June (within the offline window): the 618 gift box was on sale then."""
    w = wire(document(), at=datetime(2026, 6, 10, 2, 0, tzinfo=UTC))
    try:
        credit(w, 5_000, "a1")
        w.app.advance_clock(P, datetime(2026, 6, 20, 2, 0, tzinfo=UTC), "clock-1")
        late = datetime(2026, 6, 18, 2, 0, tzinfo=UTC)
        exchanged = run(w, cmd.ExchangePoints("m1", "X1", "gift_box_618"), "x1", occurred_at=late).events[0]
        assert exchanged.at == late
        assert (
            refused(w, cmd.ExchangePoints("m1", "X2", "gift_box_618"), "x2").reason == "OUTSIDE_SALE_WINDOW"
        )
    finally:
        w.app.close()
