"""The loyalty points ledger."""
