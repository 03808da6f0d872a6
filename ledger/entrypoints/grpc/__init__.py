"""The gRPC edge of the ledger: the ``loyalty.v1`` services over :class:`ledger.application.service.LedgerApp`."""
