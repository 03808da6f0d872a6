"""Every refusal of HoldPoints, CommitHold and ReleaseHold, exactly as the caller receives it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ledger.domain import commands as cmd
from ledger.domain.decide import Context, decide, tick
from ledger.domain.errors import InvalidCommand, NotFound, Refusal
from ledger.domain.evolve import fold
from ledger.domain.state import MemberState
from policies import PolicyHistory, little_sprout

SH = ZoneInfo("Asia/Shanghai")
HISTORY = PolicyHistory.starting_with(little_sprout(), datetime(2020, 1, 1, tzinfo=SH))
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=SH)  # 02:00 UTC


def ctx(now: datetime) -> Context:
    return Context(now=now, at=now, policies=HISTORY)


def run(state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> None:
    fold(state, tick(state, ctx(now)))
    fold(state, decide(command, state, ctx(now)))


def raised(kind: type[Exception], state: MemberState, command: cmd.MemberCommand, now: datetime = T0) -> Any:
    with pytest.raises(kind) as caught:
        run(state, command, now)
    return caught.value


def member(points: int = 5_000) -> MemberState:
    state = MemberState(program_id="ls", member_id="m1")
    run(state, cmd.EnrollMember("m1", ()))
    run(state, cmd.AdjustPoints("m1", points, "GOODWILL", "opening", "op"))
    return state


def test_a_hold_time_to_live_out_of_bounds_is_invalid() -> None:
    for ttl in (-1, 3601):
        bad = raised(InvalidCommand, member(), cmd.HoldPoints("m1", "H1", "O1", 10, 10_000, ttl))
        assert (bad.field, bad.message) == ("ttl_seconds", "must be between 1 and 3600")
    run(member(), cmd.HoldPoints("m1", "H1", "O1", 10, 10_000, 3600))


def test_a_hold_beyond_the_orders_cap_is_refused_with_the_cap_and_what_is_held() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 600, 10_000))
    r = raised(Refusal, state, cmd.HoldPoints("m1", "H2", "O1", 401, 10_000))
    assert r.reason == "REDEMPTION_CAP_EXCEEDED"
    assert (
        r.message
        == "points may pay at most 1000 points of this order at tier regular; 600 already held or committed"
    )
    assert r.metadata == {
        "cap_points": "1000",
        "already_held": "600",
        "requested": "401",
        "order_total_fen": "10000",
        "cap_share": "0.1",
        "tier": "regular",
    }
    run(state, cmd.HoldPoints("m1", "H2", "O1", 400, 10_000))


def test_a_hold_of_more_than_the_available_points_is_refused_with_both() -> None:
    r = raised(Refusal, member(300), cmd.HoldPoints("m1", "H1", "O1", 500, 10_000))
    assert (r.reason, r.message) == ("INSUFFICIENT_POINTS", "500 points requested, 300 available")
    assert r.metadata == {"available": "300", "requested": "500"}


def test_a_commit_of_more_than_the_hold_is_refused_with_what_it_holds() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 500, 10_000))
    r = raised(Refusal, state, cmd.CommitHold("m1", "H1", 501))
    assert (r.reason, r.message) == ("INSUFFICIENT_POINTS", "commit of 501 points exceeds the 500 held")
    assert r.metadata == {"available": "500", "requested": "501", "held": "500"}
    bad = raised(InvalidCommand, state, cmd.CommitHold("m1", "H1", -1))
    assert (bad.field, bad.message) == ("points", "must not be negative")


def test_a_commit_after_the_hold_timed_out_is_refused_with_when() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 500, 10_000))
    later = T0 + timedelta(seconds=900)
    r = raised(Refusal, state, cmd.CommitHold("m1", "H1", None), later)
    assert (r.reason, r.message) == ("HOLD_EXPIRED", "hold H1 timed out and was released")
    assert r.metadata == {"hold_id": "H1", "expired_at": "2026-03-10T02:15:00Z"}
    r = raised(Refusal, state, cmd.ReleaseHold("m1", "H1"), later)
    assert (r.reason, r.message) == ("HOLD_NOT_OPEN", "hold H1 was already expired")
    assert r.metadata == {"hold_id": "H1", "status": "EXPIRED"}


def test_a_closed_hold_is_not_open_and_an_unknown_one_not_found() -> None:
    state = member()
    run(state, cmd.HoldPoints("m1", "H1", "O1", 500, 10_000))
    run(state, cmd.CommitHold("m1", "H1", None))
    for command in (cmd.CommitHold("m1", "H1", None), cmd.ReleaseHold("m1", "H1")):
        r = raised(Refusal, state, command)
        assert (r.reason, r.message) == ("HOLD_NOT_OPEN", "hold H1 was already committed")
        assert r.metadata == {"hold_id": "H1", "status": "COMMITTED"}
    nf = raised(NotFound, state, cmd.ReleaseHold("m1", "H9"))
    assert (nf.kind, nf.identifier) == ("hold", "H9")
