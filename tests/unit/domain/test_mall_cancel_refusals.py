"""Every refusal of CancelExchange, exactly as the caller receives it: type, reason, message, metadata."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from ledger.domain.stock import StockState
from ledger.domain.streams import stock_stream
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)  # 02:00 UTC


def run(state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> list[ev.MemberEvent]:
    ctx = Context(now=now, at=now, policies=HISTORY)
    fold(state, tick(state, ctx))
    events = decide(command, state, ctx)
    fold(state, events)
    return events


def refused(state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> Refusal:
    with pytest.raises(Refusal) as caught:
        run(state, command, now)
    return caught.value


def member_with_coupon(exchange_id: str = "X1") -> tuple[MemberState, str]:
    """Member m1 with points, who exchanged them for a 20 CNY coupon; returns the state and the coupon's id."""
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    run(state, cmd.ExchangePoints("m1", exchange_id, "coupon_20"))
    return state, state.exchanges[exchange_id].entitlement_id


def test_a_cancellation_needs_a_reason() -> None:
    state, _ = member_with_coupon()
    with pytest.raises(InvalidCommand) as caught:
        run(state, cmd.CancelExchange("m1", "X1", "  "))
    assert (caught.value.field, caught.value.message) == ("reason", "is required")


def test_cancelling_an_unknown_exchange_is_not_found() -> None:
    state, _ = member_with_coupon()
    with pytest.raises(NotFound) as caught:
        run(state, cmd.CancelExchange("m1", "X9", "mistake"))
    assert (caught.value.kind, caught.value.identifier) == ("exchange", "X9")


def test_cancelling_twice_is_refused_with_when_it_was_cancelled() -> None:
    state, _ = member_with_coupon()
    run(state, cmd.CancelExchange("m1", "X1", "mistake"))
    r = refused(state, cmd.CancelExchange("m1", "X1", "again"), T0 + timedelta(hours=1))
    assert (r.reason, r.message) == ("EXCHANGE_ALREADY_CANCELLED", "exchange X1 was already cancelled")
    assert r.metadata == {"exchange_id": "X1", "cancelled_at": "2026-03-10T02:00:00Z"}


def test_cancelling_a_used_coupon_is_refused_naming_it_and_its_use() -> None:
    state, eid = member_with_coupon()
    run(state, cmd.ConsumeEntitlement("m1", eid, "O-1", "S-1", 1))
    r = refused(state, cmd.CancelExchange("m1", "X1", "mistake"))
    assert r.reason == "EXCHANGE_ALREADY_USED"
    assert r.message == "exchange X1: 20 CNY coupon was already used or collected"
    assert r.metadata == {"exchange_id": "X1", "entitlement_id": eid, "used": "1"}


def test_cancelling_an_expired_coupon_is_refused_with_its_end() -> None:
    state, eid = member_with_coupon()
    until = state.entitlements[eid].valid_until
    r = refused(state, cmd.CancelExchange("m1", "X1", "late"), until)
    assert r.reason == "EXCHANGE_NOT_CANCELLABLE"
    assert r.message == "exchange X1: 20 CNY coupon is no longer valid"
    assert r.metadata == {"exchange_id": "X1", "entitlement_id": eid, "valid_until": "2026-04-09T02:00:00Z"}


def test_an_exchange_without_its_entitlement_is_a_broken_state_not_a_cancellation() -> None:
    state, eid = member_with_coupon()
    del state.entitlements[eid]
    with pytest.raises(AssertionError, match=r"^an exchange's entitlement is granted with it$"):
        run(state, cmd.CancelExchange("m1", "X1", "mistake"))


def test_cancelling_a_revoked_coupon_is_refused_and_one_still_valid_is_cancelled() -> None:
    state, eid = member_with_coupon()
    until = state.entitlements[eid].valid_until
    [cancelled, *_] = decide(
        cmd.CancelExchange("m1", "X1", "in time"),
        state,
        Context(
            now=until - timedelta(microseconds=1), at=until - timedelta(microseconds=1), policies=HISTORY
        ),
    )
    assert isinstance(cancelled, ev.ExchangeCancelled)
    fold(state, [ev.EntitlementRevoked(at=T0, entitlement_id=eid, reason="downgrade")])
    r = refused(state, cmd.CancelExchange("m1", "X1", "mistake"), T0 + timedelta(hours=1))
    assert r.reason == "EXCHANGE_NOT_CANCELLABLE"
    assert r.metadata == {"exchange_id": "X1", "entitlement_id": eid, "valid_until": "2026-04-09T02:00:00Z"}


def test_points_whose_lot_expired_come_back_in_a_new_lot_named_for_the_cancellation() -> None:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 1_000, "GOODWILL", "old", "op"))  # expires at the end of March 2027
    run(state, cmd.AdjustPoints("m1", 2_000, "GOODWILL", "new", "op"), datetime(2027, 3, 20, 10, tzinfo=SH))
    run(state, cmd.ExchangePoints("m1", "X1", "coupon_20"), datetime(2027, 3, 20, 10, tzinfo=SH))
    later = datetime(2027, 4, 1, 10, tzinfo=SH)
    fold(state, tick(state, Context(now=later, at=later, policies=HISTORY)))
    version = state.version
    [cancelled, _] = decide(
        cmd.CancelExchange("m1", "X1", "changed mind"), state, Context(now=later, at=later, policies=HISTORY)
    )
    assert isinstance(cancelled, ev.ExchangeCancelled) and cancelled.relot is not None
    assert (cancelled.relot.lot_id, cancelled.relot.points) == (f"X-{version + 1}", 1_000)


def test_cancelling_an_exchange_from_stock_needs_that_stock_loaded() -> None:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", 5_000, "GOODWILL", "opening", "op"))
    pillow = StockState(stock_stream("ls", "nursing_pillow"), version=1, taken=0)
    fold(
        state,
        decide(cmd.ExchangePoints("m1", "X1", "nursing_pillow"), state, replace(ctx_at(T0), stock=pillow)),
    )
    other = StockState(stock_stream("ls", "gift_box_618"), version=1, taken=0)
    for stock in (None, other):
        with pytest.raises(
            AssertionError, match=r"^the stock of nursing_pillow was not loaded for the cancellation$"
        ):
            decide(cmd.CancelExchange("m1", "X1", "mistake"), state, replace(ctx_at(T0), stock=stock))
    events = decide(cmd.CancelExchange("m1", "X1", "mistake"), state, replace(ctx_at(T0), stock=pillow))
    assert isinstance(events[0], ev.ExchangeCancelled) and events[0].stock_stream == pillow.stream_id
    assert [(e.entitlement_id, e.reason) for e in events if isinstance(e, ev.EntitlementRevoked)] == [
        (state.exchanges["X1"].entitlement_id, "exchange_cancelled")
    ]


def ctx_at(now: datetime) -> Context:
    return Context(now=now, at=now, policies=HISTORY)
