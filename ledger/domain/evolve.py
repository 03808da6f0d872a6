"""``evolve``: apply one recorded event to a member's state.

It reads the answers the event records (lots, debits, multipliers, tiers) and never asks a policy rule again.
Invariants are asserted here and stay on in production: a broken invariant means the log or the decider is
wrong, and the ledger must stop rather than carry on with a wrong balance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ledger.domain import events as ev
from ledger.domain.fold_steps import earning, mall_household, members, tiers
from ledger.domain.fold_steps.lots import InvariantBroken
from ledger.domain.state import MemberState

__all__ = ["InvariantBroken", "evolve", "fold"]

_STEPS: tuple[dict[str, Callable[[MemberState, Any], None]], ...] = (
    earning.STEPS,
    tiers.STEPS,
    members.STEPS,
    mall_household.STEPS,
)
_APPLY: dict[str, Callable[[MemberState, Any], None]] = {
    kind: step for steps in _STEPS for kind, step in steps.items()
}
"""Event type -> the fold step that applies it (each business area's steps live in :mod:`ledger.domain.fold_steps`)."""
if len(_APPLY) != sum(len(steps) for steps in _STEPS):
    raise ImportError("two fold steps claim one event type")


def evolve(state: MemberState, event: ev.MemberEvent) -> MemberState:
    """Apply ``event`` to ``state`` in place and return it."""
    _APPLY[event.type](state, event)
    state.version += 1
    return state


def fold(state: MemberState, events: Iterable[ev.MemberEvent]) -> MemberState:
    for event in events:
        evolve(state, event)
    return state
