"""The one place where configuration picks the adapters and wires the ledger together."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.application.clock import Clock, SystemClock
from ledger.application.personal import PersonalDataStore
from ledger.application.service import LedgerApp, ReplayEntry
from ledger.application.writer import MemberChange
from ledger.domain.state import MemberState
from ledger.store.port import StoredEvent
from ledger.store.sqlite import SqliteEventStore
from policies import dump_policy, little_sprout
from projections.rows import history_row, member_rows
from projections.sqlite_queries import SqliteReadModels
from projections.sqlite_writer import MemberUpdate, SqliteProjector
from projections.verify import compare

REFERENCE_PROGRAM_ID = "little_sprout"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = "sqlite:///var/ledger.db"
    pepper: bytes = b"little-sprout-dev-pepper"
    synchronous: str = "FULL"
    reference_program: bool = True

    @classmethod
    def from_env(cls, store_url: str | None = None) -> Settings:
        return cls(
            store_url=store_url or os.environ.get("LEDGER_STORE", "sqlite:///var/ledger.db"),
            pepper=os.environ.get("LEDGER_IDENTITY_PEPPER", "little-sprout-dev-pepper").encode(),
            synchronous=os.environ.get("LEDGER_SQLITE_SYNCHRONOUS", "FULL"),
        )


def sqlite_path(store_url: str) -> str:
    if not store_url.startswith("sqlite:///"):
        raise SystemExit(f"unsupported LEDGER_STORE {store_url!r}: this build serves sqlite:///path")
    return store_url.removeprefix("sqlite:///")


def build_app(settings: Settings, clock: Clock | None = None) -> LedgerApp:
    path = sqlite_path(settings.store_url)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = SqliteEventStore(path, synchronous=settings.synchronous)  # type: ignore[arg-type]
    projector = SqliteProjector()
    projector.create_schema_at(path)
    reads = SqliteReadModels(store.read_connection)

    def project(tx: Any, stored: list[StoredEvent], changes: Sequence[MemberChange]) -> None:
        by_id = {s.event_id: s for s in stored}
        updates = [
            MemberUpdate(
                program_id=c.program_id,
                member_id=c.member_id,
                state=c.state,
                history=[
                    history_row(by_id[new.event_id], event, before, after)
                    for event, new, before, after in c.events
                ],
                due_at=c.due_at,
                identities_added=list(c.identities_added),
            )
            for c in changes
        ]
        projector.apply(tx, updates)

    def check(state: MemberState, entries: list[ReplayEntry]) -> list[str]:
        history = [history_row(e.stored, e.event, e.before, e.after) for e in entries]
        conn = store.read_connection()
        return [str(m) for m in compare(member_rows(state), history, conn, state.program_id, state.member_id)]

    personal = PersonalDataStore(str(Path(path).with_suffix(".personal.db")))
    app = LedgerApp(
        store,
        clock or SystemClock(),
        personal,
        project=project,
        identity_owner=reads.lookup_identity,
        due_members=lambda program_id, upto, limit: reads.due_members(program_id, upto, limit),
        check_projection=check,
        pepper=settings.pepper,
    )
    if settings.reference_program and REFERENCE_PROGRAM_ID not in app.program_ids():
        app.create_program(
            REFERENCE_PROGRAM_ID,
            "Little Sprout",
            dump_policy(little_sprout()),
            "real",
            None,
            idempotency_key="bootstrap:create-reference-program",
        )
    return app


def reference_document() -> str:
    return dump_policy(little_sprout())

