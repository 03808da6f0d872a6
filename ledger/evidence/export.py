"""Writing an evidence bundle of a program (or some of its members) from the ledger (see :mod:`.layout`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.application.as_of import program_members
from ledger.application.journal import journal_of
from ledger.application.service import LedgerApp
from ledger.domain import program as prog
from ledger.domain.journal import records
from ledger.domain.streams import member_stream, program_stream
from ledger.evidence import layout
from ledger.evidence.figures import balance, liability_document


class BundleRefused(Exception):
    """The bundle cannot be written where asked (the folder exists and is not empty)."""


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


def export_bundle(
    app: LedgerApp,
    program_id: str,
    out: Path,
    start: datetime,
    end: datetime,
    member_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the bundle of ``member_ids`` (default: every member) with the journal of ``[start, end)``, and return
    its manifest (the caller may sign ``manifest.json``)."""
    if out.exists() and any(out.iterdir()):
        raise BundleRefused(f"{out} exists and is not empty")
    ids = list(member_ids) if member_ids is not None else list(program_members(app, program_id))
    known_at = app.now(program_id)
    journal = journal_of(app, program_id, start, end, ids, known_at)
    tz = app.time_zone(program_id)
    out.mkdir(parents=True, exist_ok=True)
    program_events = app.store.read_stream(program_stream(program_id))
    _write(out, layout.PROGRAM, layout.events_text(program_events))
    policies = 0
    for stored in program_events:
        event = prog.decode(stored.payload)
        if isinstance(event, prog.ProgramCreated | prog.PolicyPublished):
            version = event.version if isinstance(event, prog.PolicyPublished) else 1
            effective = event.effective_from if isinstance(event, prog.PolicyPublished) else event.at
            document = {
                "version": version,
                "effective_from": effective.isoformat(),
                "document": event.document,
            }
            _write(out, layout.policy_file(version), layout.document(document))
            policies += 1
    members: list[dict[str, Any]] = []
    balances: dict[str, dict[str, int]] = {}
    referenced: set[int] = set()
    for index, member_id in enumerate(ids, start=1):
        stored_events = app.store.read_stream(member_stream(program_id, member_id))
        name = layout.member_file(index)
        _write(out, name, layout.events_text(stored_events))
        referenced.update(e.policy_version for e in stored_events if e.policy_version is not None)
        members.append({"member_id": member_id, "file": name, "events": len(stored_events),
                        "head_hash": stored_events[-1].hash.hex()})  # fmt: skip
        balances[member_id] = balance(app.view(program_id, member_id).state)
    _write(out, layout.BALANCES, layout.document(balances))
    _write(out, layout.LIABILITY, layout.document(liability_document(journal)))
    _write(out, layout.JOURNAL, layout.journal_csv(records(journal, tz)))
    files = {name: {"sha256": layout.sha256(out / name), "bytes": (out / name).stat().st_size}
             for name in layout.listed_files(out)}  # fmt: skip
    manifest = {
        "format": layout.FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "program_id": program_id,
        "time_zone": str(tz),
        "from": start.isoformat(),
        "to": end.isoformat(),
        "as_known_at": known_at.isoformat(),
        "point_value_fen": journal.point_value_fen,
        "members": members,
        "policy_versions_referenced": sorted(referenced),
        "counts": {
            "members": len(members),
            "member_events": sum(m["events"] for m in members),
            "program_events": len(program_events),
            "policy_versions": policies,
            "journal_lines": len(journal.lines),
        },
        "files": files,
    }
    _write(out, layout.MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    return manifest
