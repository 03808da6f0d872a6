"""The write path's one retry policy: a write the store refused because another writer got there first.

On a store shared by several replicas, an append carries the version each stream was decided on; if another
replica appended to one of them (or recorded one of the keys) meanwhile, the store refuses the whole append and
nothing is written (:data:`CONFLICTS`). The write is then decided again from the log, at most
``max_attempts`` times in all; after that the caller is answered :class:`Contended` (gRPC ``ABORTED``, safe
to retry with the same key). Member commands (the writer's group commit) and program writes use the same policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.application.write_requests import Contended
from ledger.eventlog.port import DuplicateCommand, DuplicateEventId, WrongExpectedVersion

CONFLICTS: tuple[type[Exception], ...] = (WrongExpectedVersion, DuplicateCommand, DuplicateEventId)
"""The store's refusals that mean "decide again": nothing of the append was written."""


@dataclass(frozen=True, slots=True)
class WriteRetry:
    max_attempts: int = 5
    """Attempts in all, the first included."""

    def again(self, attempt: int) -> bool:
        """Whether a write refused at its ``attempt``-th attempt (counted from 1) is decided again."""
        return attempt < self.max_attempts

    @staticmethod
    def gave_up(attempt: int, exc: Exception) -> Contended:
        """What the caller is answered once the attempts are used up."""
        return Contended(f"gave up after {attempt} conflicting attempts: {exc}")
