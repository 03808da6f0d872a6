"""The due work of ``decide``: each module's ``next_due`` and ``run_due`` are the ones the tick calls."""

from __future__ import annotations

from ledger.domain.decide import _DUE_ORDER, _Module, benefits, holds, lots_due, memberships, tiers


def test_a_due_module_calls_the_functions_of_the_module_it_wraps() -> None:
    wrapped = _Module(memberships)
    assert wrapped.next_due is memberships.next_due
    assert wrapped.run_due is memberships.run_due


def test_the_due_work_runs_holds_then_lots_then_memberships_tiers_and_grants() -> None:
    modules = (holds, lots_due, memberships, tiers, benefits)
    assert [(m.next_due, m.run_due) for m in _DUE_ORDER] == [(m.next_due, m.run_due) for m in modules]
