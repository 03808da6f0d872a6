"""Client libraries for the loyalty ledger gRPC API."""
