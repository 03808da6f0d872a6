"""The steps of the fold, one module per business area; :mod:`ledger.domain.evolve` dispatches to them."""
