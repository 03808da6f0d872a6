"""Configuration: which store, how durable, and the secrets, read from the environment or the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_STORE = "sqlite:///var/ledger.db"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    pepper: bytes = b"little-sprout-dev-pepper"
    synchronous: str = "FULL"
    reference_program: bool = True
    pool_size: int = 8
    #: server processes sharing the store (``ledger serve --processes N``); above 1 the embedded store runs
    #: shared (checked appends, file leases), as PostgreSQL replicas do.
    processes: int = 1
    #: requests that may wait for the writer; beyond it a write is refused with RESOURCE_EXHAUSTED at once.
    write_queue: int = 1_000
    #: the longest a call may wait for the writer, in seconds (a client's shorter deadline wins).
    call_timeout: float = 30.0
    #: streaming calls (ReplayMember, VerifyProgram) served at once in one process, and by one API key.
    max_streams: int = 16
    max_streams_per_key: int = 4
    #: seconds a call may wait for a free worker thread; one that waited longer is refused (RESOURCE_EXHAUSTED).
    max_worker_wait: float = 2.0

    @classmethod
    def from_env(cls, store_url: str | None = None) -> Settings:
        return cls(
            store_url=store_url or os.environ.get("LEDGER_STORE", DEFAULT_STORE),
            pepper=os.environ.get("LEDGER_IDENTITY_PEPPER", "little-sprout-dev-pepper").encode(),
            synchronous=os.environ.get("LEDGER_SQLITE_SYNCHRONOUS", "FULL"),
            pool_size=int(os.environ.get("LEDGER_POOL_SIZE", "8")),
            write_queue=_positive(int, "LEDGER_WRITE_QUEUE", 1_000),
            call_timeout=_positive(float, "LEDGER_CALL_TIMEOUT", 30.0),
            max_streams=_positive(int, "LEDGER_MAX_STREAMS", 16),
            max_streams_per_key=_positive(int, "LEDGER_MAX_STREAMS_PER_KEY", 4),
            max_worker_wait=_positive(float, "LEDGER_MAX_WORKER_WAIT", 2.0),
        )

    def without_reference_program(self) -> Settings:
        return replace(self, reference_program=False)


def _positive(kind: type[int] | type[float], name: str, default: int | float) -> Any:
    """A positive number from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SystemExit(f"{name} must be a positive number, got {raw!r}")
    return value


def store_kind(store_url: str) -> str:
    """``sqlite``, ``postgresql``, ``kurrentdb`` or ``memory``; exits with a clear message for anything else."""
    scheme = store_url.split(":", 1)[0].lower()
    if store_url == "memory://":
        return "memory"
    if scheme == "sqlite" and store_url.startswith("sqlite:///"):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("kurrentdb", "esdb", "kdb"):
        return "kurrentdb"
    raise SystemExit(
        f"unsupported LEDGER_STORE {store_url!r}: use sqlite:///path, postgresql://..., kurrentdb://... or memory://"
    )


def sqlite_path(store_url: str) -> str:
    if store_kind(store_url) != "sqlite":
        raise SystemExit(f"{store_url!r} is not a sqlite:///path store")
    return store_url.removeprefix("sqlite:///")
