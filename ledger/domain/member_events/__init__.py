"""The member events, one module per business area; :mod:`ledger.domain.events` gathers them into one union."""
