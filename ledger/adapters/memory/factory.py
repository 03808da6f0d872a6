"""The in-memory wiring: the event log in process memory, for handler tests and sandboxes that keep nothing.

``memory://`` names it. The log is :class:`~ledger.adapters.memory.store.InMemoryEventStore`; the read models
and the personal-data vault are the SQLite ones, in a private temporary folder that is removed when the store
is closed or collected (so every query runs the same statements as on the embedded store). Nothing survives
the process: never use it for a real program.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import replace
from pathlib import Path

from ledger.adapters.backend import Backend
from ledger.adapters.memory.store import InMemoryEventStore
from ledger.adapters.memory.webhooks import MemoryWebhooks
from ledger.adapters.sqlite.factory import sqlite_beside
from ledger.settings import Settings


def memory_backend(settings: Settings) -> Backend:
    folder = tempfile.mkdtemp(prefix="ledger-memory-")
    store = InMemoryEventStore()
    weakref.finalize(store, shutil.rmtree, folder, True)
    backend = sqlite_beside(
        store, str(Path(folder) / "read-models.db"), kind="memory", read_models_url=settings.store_url
    )
    return replace(backend, webhooks=MemoryWebhooks())
