"""Python client for the loyalty ledger."""

from clients.python.loyalty_client import LedgerRefusal, LoyaltyClient

__all__ = ["LedgerRefusal", "LoyaltyClient"]
