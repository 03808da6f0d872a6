"""Named positions kept in process memory, for the ``memory://`` wiring (nothing survives the process)."""

from __future__ import annotations

import threading


class MemoryCheckpoints:
    """A :class:`~ledger.application.ports.CheckpointStore` in a dict."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> int:
        with self._lock:
            return self._positions.get(name, 0)

    def save(self, name: str, position: int) -> None:
        with self._lock:
            self._positions[name] = position
