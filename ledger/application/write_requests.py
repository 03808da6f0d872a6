"""What callers hand the single writer besides commands (a quote, a peek), how it refuses, and what it tells.

The refusals are the write path's own, mapped to gRPC statuses at the edge: :class:`Overloaded` (the queue is
full), :class:`DeadlineExceeded`, :class:`StoreUnavailable` (nothing written, safe to retry) and
:class:`Contended` (another replica kept winning). The hooks are for metrics (:data:`GroupObserver`, once per
group) and traces (:data:`WaitObserver` around a caller's wait, told the :class:`GroupPhases` of its groups).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

from ledger.domain import commands as cmd
from ledger.domain.state import MemberState


class Overloaded(Exception):
    """The write queue is full; the caller should back off and retry (RESOURCE_EXHAUSTED)."""

    def __init__(self, message: str = "the write queue is full", retry_after: float = 0.1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The call's deadline passed before the write was answered (DEADLINE_EXCEEDED; retry with the same key)."""


class StoreUnavailable(Exception):
    """The group could not be committed; nothing of it was written (UNAVAILABLE, safe to retry)."""


class Contended(Exception):
    """Another replica kept writing the same members; after the bounded retries nothing was written (ABORTED)."""


@dataclass(frozen=True, slots=True)
class Quote:
    """A request for what a purchase would earn (decided by the writer so it sees the latest state)."""

    program_id: str
    command: cmd.RecordPurchase
    occurred_at: datetime | None


@dataclass(frozen=True, slots=True)
class Peek:
    """A request for a member's state now (due work applied first), answered with a private copy."""

    program_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class PeekResult:
    state: MemberState
    now: datetime


Request = cmd.Envelope | Quote | Peek


GroupObserver = Callable[[int, float, str], None]
"""Told once per group that went to the store: its commands, the seconds the append took, and the outcome:
``committed``, ``conflict`` (another replica got there first; decided again) or ``store_error``."""


@dataclass(frozen=True, slots=True)
class GroupPhases:
    """When the writer worked on the group that answered a request, for traces: plain ``time.time_ns()`` pairs
    (start, end), never anything of the commands. ``decide``: from taking the group (or deciding it again after a
    conflict: ``attempt``) to having decided every command, the recorded keys and the members' tails read;
    ``append``: the store's append and commit (None: the group wrote nothing, as for reads and known keys);
    ``project``: writing the read models, inside the append's transaction (``projected_in_append``: SQLite,
    PostgreSQL) or right after the commit (KurrentDB, ``memory://``)."""

    commands: int
    attempt: int
    decide: tuple[int, int]
    append: tuple[int, int] | None = None
    project: tuple[int, int] | None = None
    projected_in_append: bool = False


PhaseSink = Callable[[GroupPhases], None]
"""Told, on the caller's thread after its answer, of the phases of each group that answered its requests."""

WaitObserver = Callable[[int, int], AbstractContextManager[PhaseSink | None]]
"""Around a caller's wait for the writer (traces): given the requests and how many were queued before them; what
it enters as (None: nothing) is told the phases of the groups that answered. While one is set, the writer times
each group's phases (a few clock reads per group, none per command)."""
