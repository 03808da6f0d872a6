"""The port contracts of :mod:`ledger.testing.port_contracts` (checkpoints, personal data, leases, webhooks) per
backend.

Each backend is opened the way ``ledger serve`` opens it (``ledger.bootstrap.build``). PostgreSQL runs in a
schema of its own per test; without a server those tests are skipped, except in CI where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger.adapters.backend import Backend
from ledger.bootstrap import Settings, build
from ledger.testing.port_contracts import (
    CheckpointContract,
    LeaseContract,
    PersonalDataContract,
    WebhookStoreContract,
)
from ledger.testing.postgres import fresh_schema, require_postgres


@contextmanager
def _opened(url: str, processes: int = 1) -> Iterator[Backend]:
    wired = build(Settings(store_url=url, reference_program=False, processes=processes))
    try:
        yield wired.backend
    finally:
        wired.app.close()
        wired.backend.personal.close()
        wired.backend.store.close()


class SqlitePorts:
    processes = 1

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'ledger.db'}"

    @contextmanager
    def open_backend(self) -> Iterator[Backend]:
        with _opened(self.url, self.processes) as backend:
            yield backend


class PostgresPorts:
    @pytest.fixture(autouse=True)
    def _schema(self) -> Iterator[None]:
        require_postgres()
        with fresh_schema() as url:
            self.url = url
            yield

    @contextmanager
    def open_backend(self) -> Iterator[Backend]:
        with _opened(self.url) as backend:
            yield backend


class MemoryPorts:
    reopens = False  # a second memory:// is a new, empty ledger

    @contextmanager
    def open_backend(self) -> Iterator[Backend]:
        with _opened("memory://") as backend:
            yield backend


class TestSqliteCheckpoints(SqlitePorts, CheckpointContract):
    pass


class TestSqlitePersonalData(SqlitePorts, PersonalDataContract):
    pass


class TestSqliteLeases(SqlitePorts, LeaseContract):
    processes = 2  # the file leases of `ledger serve --processes N` (one process needs none)


class TestPostgresCheckpoints(PostgresPorts, CheckpointContract):
    pass


class TestPostgresPersonalData(PostgresPorts, PersonalDataContract):
    pass


class TestPostgresLeases(PostgresPorts, LeaseContract):
    pass


class TestMemoryCheckpoints(MemoryPorts, CheckpointContract):
    pass


class TestMemoryPersonalData(MemoryPorts, PersonalDataContract):
    pass


class TestMemoryLeases(MemoryPorts, LeaseContract):
    pass


class TestSqliteWebhooks(SqlitePorts, WebhookStoreContract):
    pass


class TestPostgresWebhooks(PostgresPorts, WebhookStoreContract):
    pass


class TestMemoryWebhooks(MemoryPorts, WebhookStoreContract):
    pass
