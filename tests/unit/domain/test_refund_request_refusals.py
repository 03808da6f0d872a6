"""Refunds refused or invalid, exactly as the caller receives them: an unknown order or line, a refund id used
twice, a line named twice or for no money, more than a line paid, an order already refunded in full."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain.commands import RefundLine
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import OrderLine, PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
CTX = Context(now=T0, at=T0, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand) -> None:
    fold(state, tick(state, CTX))
    fold(state, decide(command, state, CTX))


def buyer() -> MemberState:
    state = MemberState(program_id="p", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    lines = (
        OrderLine(line_id="L1", sku="SKU-1", category="toys", quantity=1, paid_fen=5_000),
        OrderLine(line_id="L2", sku="SKU-2", category="toys", quantity=1, paid_fen=3_000),
    )
    run(state, cmd.RecordPurchase("m1", "O1", lines, 8_000))
    return state


def raised(kind: type[Exception], command: cmd.MemberCommand, state: MemberState) -> Any:
    with pytest.raises(kind) as caught:
        decide(command, state, CTX)
    return caught.value


def test_an_unknown_order_is_not_found_by_its_id() -> None:
    e = raised(NotFound, cmd.RefundPurchase("m1", "O9", "R1"), buyer())
    assert (e.kind, e.identifier) == ("order", "O9")


def test_a_refund_id_applied_twice_is_refused_naming_it() -> None:
    state = buyer()
    run(state, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("L1", 1_000),)))
    r = raised(Refusal, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("L1", 1_000),)), state)
    assert (r.reason, r.message, r.metadata) == (
        "REFUND_EXISTS",
        "refund R1 was already applied",
        {"id": "R1"},
    )


def test_an_order_refunded_in_full_refuses_a_whole_refund_saying_so() -> None:
    state = buyer()
    run(state, cmd.RefundPurchase("m1", "O1", "R1"))
    r = raised(Refusal, cmd.RefundPurchase("m1", "O1", "R2"), state)
    assert (r.reason, r.message) == ("REFUND_EXCEEDS_LINE", "order O1 is already fully refunded")


def test_an_unknown_line_is_not_found_by_order_and_line() -> None:
    e = raised(NotFound, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("L9", 100),)), buyer())
    assert (e.kind, e.identifier) == ("order line", "O1/L9")


def test_a_line_named_twice_or_for_no_money_is_invalid_saying_which() -> None:
    twice = (RefundLine("L1", 100), RefundLine("L1", 100))
    e = raised(InvalidCommand, cmd.RefundPurchase("m1", "O1", "R1", twice), buyer())
    assert (e.field, e.message) == ("lines[1].line_id", "line 'L1' named twice")
    e = raised(InvalidCommand, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("L2", 0),)), buyer())
    assert (e.field, e.message) == ("lines[0].refunded_fen", "must be positive")


def test_more_than_a_line_paid_is_refused_with_what_it_paid_and_what_came_back() -> None:
    state = buyer()
    run(state, cmd.RefundPurchase("m1", "O1", "R1", (RefundLine("L2", 1_000),)))
    r = raised(Refusal, cmd.RefundPurchase("m1", "O1", "R2", (RefundLine("L2", 2_001),)), state)
    assert (r.reason, r.message, r.metadata) == (
        "REFUND_EXCEEDS_LINE",
        "line L2 paid 3000 fen, 1000 already refunded",
        {
            "order_id": "O1",
            "line_id": "L2",
            "paid_fen": "3000",
            "refunded_fen": "1000",
            "requested_fen": "2001",
        },
    )
