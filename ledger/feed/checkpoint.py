"""Where the feed relay remembers how far it has published: ``feed_checkpoint(name, position)``.

A checkpoint is the global position of the last event whose publication JetStream acknowledged; 0 (the
default) means nothing yet. ``save`` overwrites, so an operator may move a checkpoint back to republish.

Two implementations of :class:`CheckpointStore`: :class:`SqliteCheckpoints` (a table in any SQLite file,
typically the event store's) and :class:`PostgresCheckpoints` (psycopg 3, e.g. next to the PostgreSQL store).
Both create the table on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    pass

TABLE: Final = "feed_checkpoint"


