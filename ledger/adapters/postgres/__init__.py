"""The production backend: the event log, read models, checkpoints, advisory leases and personal data in PostgreSQL."""
