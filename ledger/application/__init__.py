"""The application layer: the one write path, clocks, the scheduler and the queries."""
