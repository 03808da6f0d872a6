"""Configuration: which store, how durable, and the secrets, read from the environment or the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

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

    @classmethod
    def from_env(cls, store_url: str | None = None) -> Settings:
        return cls(
            store_url=store_url or os.environ.get("LEDGER_STORE", DEFAULT_STORE),
            pepper=os.environ.get("LEDGER_IDENTITY_PEPPER", "little-sprout-dev-pepper").encode(),
            synchronous=os.environ.get("LEDGER_SQLITE_SYNCHRONOUS", "FULL"),
            pool_size=int(os.environ.get("LEDGER_POOL_SIZE", "8")),
        )

    def without_reference_program(self) -> Settings:
        return replace(self, reference_program=False)


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
