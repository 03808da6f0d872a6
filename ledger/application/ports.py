"""Ports the application needs from a backend besides the event log: leases and feed checkpoints."""

from __future__ import annotations

from typing import Protocol


class Lease(Protocol):
    """Permission to run work that must run on one replica at a time (see ``AdvisoryLease``)."""

    def try_acquire(self) -> bool: ...

    def held(self) -> bool: ...

    def close(self) -> None: ...


class CheckpointStore(Protocol):
    def load(self, name: str) -> int:
        """The saved position of ``name``; 0 if none was saved."""
        ...

    def save(self, name: str, position: int) -> None:
        """Durably set the position of ``name``."""
        ...
