"""How many random examples the hypothesis tests run: CI's budget, a night run's, or a mutation run's.

``LEDGER_DEEP_TESTS=1`` (``make test-deep``) asks for the night budget. Under mutmut (which sets
``MUTANT_UNDER_TEST`` for every run it makes) a test runs once per mutant, so the state machines shrink to a
few derandomised histories: the same mutant gets the same verdict every time, and a surviving mutant costs
seconds instead of minutes. The deterministic tests carry most of the killing; the small random budget is a
second net.
"""

from __future__ import annotations

import os

DEEP = os.environ.get("LEDGER_DEEP_TESTS", "") not in ("", "0")
UNDER_MUTATION = "MUTANT_UNDER_TEST" in os.environ


def examples(ci: int, *, deep: int, mutation: int) -> int:
    """The number of examples (or steps) for the budget this run asks for."""
    if UNDER_MUTATION:
        return mutation
    return deep if DEEP else ci
