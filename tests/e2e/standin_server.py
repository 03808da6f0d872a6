"""A stand-in for ``ledger serve`` while the read-model projections are not available: the real facade, the
SQLite event store and the real gRPC edge, with identities and the due index kept in memory.

Used by the end-to-end fixture only when ``LEDGER_E2E_STANDIN=1``; the default is the real command line.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.api.server import serve
from ledger.application.clock import SystemClock
from ledger.application.personal import PersonalDataStore
from ledger.application.service import LedgerApp
from ledger.application.writer import MemberChange
from ledger.store.port import StoredEvent
from ledger.store.sqlite import SqliteEventStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--port-file")
    args = parser.parse_args()
    path = args.store.removeprefix("sqlite:///")
    store = SqliteEventStore(path, synchronous="NORMAL")
    lock = threading.Lock()
    identities: dict[tuple[str, str], str] = {}
    due: dict[tuple[str, str], datetime] = {}

    def project(tx: Any, stored: list[StoredEvent], changes: Sequence[MemberChange]) -> None:
        with lock:
            for c in changes:
                for identity in c.identities_added:
                    identities[(c.program_id, identity)] = c.member_id
                if c.due_at is None:
                    due.pop((c.program_id, c.member_id), None)
                else:
                    due[(c.program_id, c.member_id)] = c.due_at

    def identity_owner(program_id: str, identity: str) -> str | None:
        with lock:
            return identities.get((program_id, identity))

    def due_members(program_id: str, upto: datetime, limit: int) -> list[str]:
        with lock:
            return sorted(m for (p, m), at in due.items() if p == program_id and at <= upto)[:limit]

    personal = PersonalDataStore(str(Path(path).with_suffix(".personal.db")))
    app = LedgerApp(
        store, SystemClock(), personal, project=project, identity_owner=identity_owner, due_members=due_members
    )
    try:
        serve(app, args.listen, port_file=args.port_file)
    finally:
        app.close()


if __name__ == "__main__":
    main()
