"""The backends: one package each (memory, sqlite, postgres, kurrentdb) with everything that backend holds.

Each package has its event store, read-model tables and projector, checkpoints, lease, personal-data vault and
migrations; removing a backend is deleting its folder (and its branch in :mod:`ledger.bootstrap`).
"""
