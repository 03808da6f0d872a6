"""Read models: rows derived from member state and events, their SQLite tables, rebuild and verify.

- :mod:`projections.rows` - the rows of one member and of one event (pure).
- :mod:`ledger.adapters.sqlite.read_schema` / :mod:`projections.codec` - the tables and how rows are stored.
- :mod:`ledger.adapters.sqlite.projector` - :class:`~ledger.adapters.sqlite.projector.SqliteProjector`, used in the append's
  transaction.
- :mod:`ledger.adapters.sqlite.read_models` - :class:`~ledger.adapters.sqlite.read_models.SqliteReadModels`, the query side.
- :mod:`projections.rebuild` - fold the whole log again into fresh tables and switch over.
- :mod:`projections.verify` - compare stored rows with freshly computed ones.
"""
