"""Helpers for tests that need a PostgreSQL server (shipped in the package so every test suite can use them).

``LEDGER_TEST_POSTGRES`` names the server (default ``postgresql://postgres@127.0.0.1:5432/test``). Each test
gets a schema of its own with :func:`fresh_schema`, so tests run in parallel on one database without
seeing each other's tables. :func:`require_postgres` skips a test when no server answers, except in CI
(the ``CI`` environment variable is set), where a missing server is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/test"
ENV_VAR: Final = "LEDGER_TEST_POSTGRES"


def postgres_url() -> str:
    """The test server's URL: ``$LEDGER_TEST_POSTGRES`` or :data:`DEFAULT_URL`."""
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def require_postgres(url: str | None = None) -> str:
    """Return the test server's URL if it answers; otherwise skip the test (fail it when ``CI`` is set)."""
    target = url or postgres_url()
    try:
        with psycopg.connect(target, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        reason = f"PostgreSQL is not reachable at {_redacted(target)} (set {ENV_VAR}): {error}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(reason)
    return target


def with_search_path(base_url: str, schema: str) -> str:
    """``base_url`` whose connections put ``schema`` first on their ``search_path``."""
    option = f"-c search_path={schema}"
    if base_url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(base_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        existing = [v for k, v in query if k == "options"]
        query = [(k, v) for k, v in query if k != "options"]
        query.append(("options", " ".join([*existing, option])))
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    existing_options = conninfo_to_dict(base_url).get("options")
    options = f"{existing_options} {option}" if existing_options else option
    return make_conninfo(base_url, options=options)


@contextmanager
def fresh_schema(base_url: str | None = None) -> Iterator[str]:
    """Create a uniquely named schema, yield a URL whose connections use it, then drop it (and the vault's keys
    schema beside it) with its tables."""
    base = base_url or postgres_url()
    schema = f"ledger_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            for name in (schema, f"{schema}_keys"):  # the vault keeps its keys in a schema of their own
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _redacted(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    return url
