"""The embedded backend: the event log, read models, checkpoints, file leases and personal data in SQLite files."""
