"""The KurrentDB backend: the event log in KurrentDB (read models in SQLite or PostgreSQL beside it)."""
