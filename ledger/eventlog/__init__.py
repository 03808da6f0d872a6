"""The event log every backend implements: the port (:mod:`.port`), the per-stream hash chain, staged appends.

Import the port's types from :mod:`ledger.eventlog.port` and the chain from :mod:`ledger.eventlog.chain`; a
backend lives in its own package under :mod:`ledger.adapters`.
"""
