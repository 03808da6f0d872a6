"""Test helpers shipped with the ledger: a real server on a free port, the store contract, PostgreSQL schemas."""
