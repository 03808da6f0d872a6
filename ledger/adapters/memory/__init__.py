"""The in-memory backend: an event store for unit tests and the all-in-memory wiring."""
