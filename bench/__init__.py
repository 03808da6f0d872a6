"""Throughput, latency, memory and replay benchmark for the ledger server."""
