"""The event store: the port every backend implements, the hash chain, and the in-memory and SQLite backends.

Import the port's types from :mod:`ledger.store.port`, the chain from :mod:`ledger.store.chain` and a
backend from its own module (:mod:`ledger.store.sqlite`, :mod:`ledger.store.memory`).
"""
