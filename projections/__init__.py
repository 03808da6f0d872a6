"""Read models: rows derived from member state and events, their SQLite tables, rebuild and verify.

- :mod:`projections.rows` - the rows of one member and of one event (pure).
- :mod:`projections.sqlite_schema` / :mod:`projections.sqlite_codec` - the tables and how rows are stored.
- :mod:`projections.sqlite_writer` - :class:`~projections.sqlite_writer.SqliteProjector`, used in the append's
  transaction.
- :mod:`projections.sqlite_queries` - :class:`~projections.sqlite_queries.SqliteReadModels`, the query side.
- :mod:`projections.rebuild` - fold the whole log again into fresh tables and switch over.
- :mod:`projections.verify` - compare stored rows with freshly computed ones.
"""
