"""Fixtures shared by the whole suite: the behavioural tests run once per production backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    """The ledger's log lines in tests, as structlog prints them by default, but with a failure's traceback as
    plain text: no frame locals (they could hold a key or a member's name, and rendering them with rich costs
    seconds per failure, which a mutation run pays for every mutant that breaks the writer)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ]
    )


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store of each backend: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    from ledger.testing.postgres import fresh_schema, require_postgres

    with fresh_schema(require_postgres()) as url:
        yield url
