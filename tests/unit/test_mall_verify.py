"""Verification of the points mall's stock streams (``verify_stock``, ``VerifyProgram``, ``ledger verify``): an
honest history verifies, and each kind of forged or altered stock event is found and named.

The program runs on a test clock moved by hand (``ManualClock``): nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger.bootstrap import Wired
from ledger.domain import commands as cmd
from ledger.domain.streams import stock_stream
from tests.unit.test_mall import START, P, credit, document, exchange, run, wire


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = wire(document())
    yield w
    w.app.close()


def test_the_stock_streams_verify_against_the_members_exchanges_and_a_forged_unit_is_found(
    wired: Wired,
) -> None:
    from ledger.application.mall import verify_stock
    from ledger.domain.stock import StockTaken, encode
    from ledger.eventlog.port import AppendBatch, NewEvent, StreamAppend

    credit(wired, 10_000, "a1")
    exchange(wired, "X1", "nursing_pillow")
    run(wired, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
    exchange(wired, "X2", "nursing_pillow")
    run(wired, cmd.AdjustStock("nursing_pillow", 5, "delivery", "op1"), "s1")
    [report] = verify_stock(wired.app, P)
    assert (report.stream_id, report.ok, report.events, report.problems) == (
        stock_stream(P, "nursing_pillow"),
        True,
        4,
        [],
    )
    # a unit taken that no member's exchange accounts for (written straight to the log, as tampering would)
    sid = stock_stream(P, "nursing_pillow")
    forged = StockTaken(at=START, reward_id="nursing_pillow", member_id="m1", exchange_id="X9")
    wired.app.store.append(
        AppendBatch(
            [
                StreamAppend(
                    sid,
                    wired.app.store.stream_version(sid),
                    [
                        NewEvent(
                            "forged-1",
                            forged.type,
                            1,
                            START,
                            START,
                            None,
                            None,
                            None,
                            None,
                            {},
                            encode(forged),
                        )
                    ],
                )
            ]
        )
    )
    [report] = verify_stock(wired.app, P)
    assert not report.ok and any("no exchange X9 of m1" in p for p in report.problems)


def forge(w: Wired, reward: str, event: Any) -> None:
    """Append a stock event straight to the log (chained like any other), as a forger with write access would."""
    from ledger.domain.stock import encode
    from ledger.eventlog.port import AppendBatch, NewEvent, StreamAppend

    sid = stock_stream(P, reward)
    version = w.app.store.stream_version(sid)
    new = NewEvent(
        f"forged-{sid}-{version}", event.type, 1, START, START, None, None, None, None, {}, encode(event)
    )
    w.app.store.append(AppendBatch([StreamAppend(sid, version, [new])]))


def alter_last(w: Wired, reward: str, event: Any) -> None:
    """Rewrite the payload of the stock stream's last event in place, leaving its hash (tampering after the fact)."""
    from dataclasses import replace as replace_stored

    from ledger.domain.stock import encode

    store: Any = w.app.store
    sid = stock_stream(P, reward)
    old = store._streams[sid][-1]
    altered = replace_stored(old, payload=encode(event))
    store._streams[sid][-1] = altered
    store._events[store._events.index(old)] = altered


def _taken(exchange_id: str, member: str = "m1", reward: str = "nursing_pillow") -> Any:
    from ledger.domain.stock import StockTaken

    return StockTaken(at=START, reward_id=reward, member_id=member, exchange_id=exchange_id)


def _forgeries() -> list[tuple[str, Any, str]]:
    from ledger.domain.stock import StockAdjusted, StockReturned

    def returned(w: Wired) -> None:
        forge(
            w,
            "nursing_pillow",
            StockReturned(at=START, reward_id="nursing_pillow", member_id="m1", exchange_id="X2"),
        )

    def adjusted(w: Wired) -> None:
        forge(
            w,
            "nursing_pillow",
            StockAdjusted(
                at=START,
                reward_id="nursing_pillow",
                units=-1_000,
                reason="x",
                operator_id="op9",
                stock_left_after=0,
            ),
        )

    return [
        ("altered", lambda w: alter_last(w, "nursing_pillow", _taken("X2", member="m2")), "hash chain broken at version 3"),
        ("below_zero", adjusted, "version 4: stock below zero (-801)"),
        ("twice", lambda w: forge(w, "nursing_pillow", _taken("X2")), "member m1 holds 1 units of nursing_pillow, the stock says 2"),
        ("returned", returned, "version 4: exchange X2 returned but not cancelled"),
        ("other_stock", lambda w: forge(w, "gift_box_618", _taken("X2", reward="gift_box_618")), "version 1: no exchange X2 of m1 on this stock"),
        ("unlimited", lambda w: forge(w, "coupon_20", _taken("X3", reward="coupon_20")), "version 1: coupon_20 has no finite stock in the policy in force"),
    ]  # fmt: skip


def verified_by_the_audit_service_and_the_cli(
    w: Wired, capsys: pytest.CaptureFixture[str]
) -> tuple[Any, int, str]:
    """``VerifyProgram``'s summary, and ``ledger verify``'s exit code and output, for the program."""
    from ledger.entrypoints import maintenance_cli
    from ledger.entrypoints.grpc.audit_service import AuditService
    from loyalty.v1 import audit_pb2

    responses = list(AuditService(w.app).VerifyProgram(audit_pb2.VerifyProgramRequest(program_id=P), None))  # type: ignore[arg-type]
    capsys.readouterr()
    code = maintenance_cli.run_verify(w.app, P, None)
    return responses[-1].summary, code, capsys.readouterr().out


@pytest.mark.parametrize(("name", "tamper", "problem"), _forgeries(), ids=[f[0] for f in _forgeries()])
def test_verify_finds_each_kind_of_forged_or_altered_stock_event(
    name: str, tamper: Any, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.application.mall import verify_stock

    w = wire(document())
    try:
        credit(w, 10_000, "a1")
        exchange(w, "X1", "nursing_pillow")
        run(w, cmd.CancelExchange("m1", "X1", "changed mind"), "c1")
        exchange(w, "X2", "nursing_pillow")
        exchange(w, "X3", "coupon_20")
        assert all(r.ok for r in verify_stock(w.app, P))
        summary, code, _ = verified_by_the_audit_service_and_the_cli(w, capsys)
        assert summary.ok and code == 0
        tamper(w)
        bad = [r for r in verify_stock(w.app, P) if not r.ok]
        assert len(bad) == 1 and any(problem in p for p in bad[0].problems), [r.problems for r in bad]
        summary, code, out = verified_by_the_audit_service_and_the_cli(w, capsys)
        assert not summary.ok and [s.stream_id for s in summary.stocks if not s.ok] == [bad[0].stream_id]
        assert any(problem in p for s in summary.stocks for p in s.problems)
        assert code == 1 and f"FAIL program={P} stock={bad[0].stream_id}" in out and problem in out
    finally:
        w.app.close()
