"""Webhook subscriptions in process memory, for ``memory://`` (nothing survives the process).

The same statements as the embedded store's (:class:`~ledger.adapters.sqlite.webhooks.SqliteWebhooks`), on a
private in-memory SQLite database.
"""

from __future__ import annotations

import sqlite3

from ledger.adapters.sqlite.webhooks import SqliteWebhooks


class MemoryWebhooks(SqliteWebhooks):
    def __init__(self) -> None:
        super().__init__(lambda: sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False))
