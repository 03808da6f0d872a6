"""``decide``: the pure core. ``(command, state, context) -> events`` or a refusal.

No I/O, no wall clock, no randomness: time comes in the context, ids are derived from the command and the
state. ``decide`` never mutates the state it is given; the caller applies the events with ``evolve``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from ledger.domain import commands as cmd
from ledger.domain.decide import (
    adjust,
    benefits,
    earning,
    holds,
    household,
    lots_due,
    mall,
    memberships,
    refunds,
    tiers,
)
from ledger.domain.decide.context import Context, effective_tier, next_id, require_member
from ledger.domain.decide.imports import import_member
from ledger.domain.decide.members import enroll, erase
from ledger.domain.events import MemberEvent
from ledger.domain.evolve import evolve
from ledger.domain.state import MemberState

__all__ = ["Context", "decide", "effective_tier", "next_due", "next_id", "tick"]

MAX_TICK_STEPS = 10_000


class DueWork(Protocol):
    def next_due(self, state: MemberState, ctx: Context) -> datetime | None: ...

    def run_due(self, state: MemberState, at: datetime, ctx: Context) -> list[MemberEvent]: ...


class _Module:
    def __init__(self, module: Any) -> None:
        self.next_due: Callable[[MemberState, Context], datetime | None] = module.next_due
        self.run_due: Callable[[MemberState, datetime, Context], list[MemberEvent]] = module.run_due


# At one instant: holds time out first, then lots activate and expire, then memberships, tiers, grants.
_DUE_ORDER: tuple[_Module, ...] = tuple(_Module(m) for m in (holds, lots_due, memberships, tiers, benefits))


def next_due(state: MemberState, ctx: Context) -> datetime | None:
    """The member's next due moment, or None (what the due index stores).

    It depends only on the state and the program's policies (never on ``ctx.now``, ``ctx.at`` or the profile),
    so the answer is remembered on the state against its version and the policies object (immutable): the
    writer asks once before deciding a command and again for the due index after it.
    """
    memo = state.due_memo
    policies = ctx.policies
    if memo is not None and memo[0] == state.version and memo[1] is policies:
        return memo[2]
    due = _next_due(state, ctx)
    state.due_memo = (state.version, policies, due)
    return due


def _next_due(state: MemberState, ctx: Context) -> datetime | None:
    if not state.enrolled or state.merged_into is not None:
        return None
    moments = [d for d in (m.next_due(state, ctx) for m in _DUE_ORDER) if d is not None]
    return min(moments) if moments else None


def tick(state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Everything that fell due up to ``ctx.now``, in time order, as events."""
    first = next_due(state, ctx)
    if first is None or first > ctx.now:
        return []
    scratch = state.clone()
    out: list[MemberEvent] = []
    for _ in range(MAX_TICK_STEPS):
        best: tuple[datetime, int] | None = None
        for i, module in enumerate(_DUE_ORDER):
            due = module.next_due(scratch, ctx)
            if due is not None and due <= ctx.now and (best is None or (due, i) < best):
                best = (due, i)
        if best is None:
            return out
        at, i = best
        produced = _DUE_ORDER[i].run_due(scratch, at, ctx.for_time(at))
        assert produced, f"due work at {at.isoformat()} produced no event"
        for event in produced:
            evolve(scratch, event)
            out.append(event)
    raise AssertionError("tick did not settle")


def decide(command: cmd.MemberCommand, state: MemberState, ctx: Context) -> list[MemberEvent]:
    """Decide one command against a state that is already ticked up to ``ctx.now``."""
    if isinstance(command, cmd.EnrollMember):
        return enroll(command, state, ctx)
    if isinstance(command, cmd.EraseMember):
        return erase(command, state, ctx)
    if isinstance(command, cmd.ImportMember):
        return import_member(command, state, ctx)
    if isinstance(command, cmd.Tick):
        require_member(state)
        return tick(state, ctx)
    require_member(state)
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"no handler for {type(command).__name__}")
    return handler(command, state, ctx)


_HANDLERS: dict[type, Callable[[Any, MemberState, Context], list[MemberEvent]]] = {
    cmd.RecordPurchase: earning.record_purchase,
    cmd.AwardPoints: earning.award_points,
    cmd.HoldPoints: holds.hold,
    cmd.CommitHold: holds.commit,
    cmd.ReleaseHold: holds.release,
    cmd.RefundPurchase: refunds.refund,
    cmd.AdjustPoints: adjust.adjust,
    cmd.PurchaseMembership: memberships.purchase,
    cmd.CancelMembership: memberships.cancel,
    cmd.OverrideTier: tiers.override,
    cmd.ConsumeEntitlement: benefits.consume,
    cmd.ExchangePoints: mall.exchange,
    cmd.CancelExchange: mall.cancel,
    cmd.CreateHousehold: household.create,
}
