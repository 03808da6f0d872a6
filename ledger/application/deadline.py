"""The deadline of the current call: set by the entrypoint that took the call, honoured by the writer.

A write waits for the writer at most until this deadline, and the writer drops a write whose deadline passed
before it was decided (nothing of it is written): a write never queues forever.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

CALL_DEADLINE: ContextVar[float | None] = ContextVar("ledger_call_deadline", default=None)
"""``time.monotonic()`` at which the current call ends (None: no call, e.g. the command line or the scheduler)."""


def deadline_after(timeout: float) -> float:
    """The earlier of the current call's deadline and ``timeout`` seconds from now."""
    own = time.monotonic() + timeout
    call = CALL_DEADLINE.get()
    return own if call is None else min(own, call)
