"""The evidence bundle's files: their names, how a stored event is written as one JSON line and read back, digests.

A bundle is a directory (``docs/finance.md``, "The evidence bundle")::

    manifest.json            what the bundle holds, with the SHA-256 digest and size of every other file
    manifest.sig             optional: the Ed25519 signature of manifest.json (base64)
    program.jsonl            the program stream (creation, policy versions, test clock), every event
    members/NNNNN.jsonl      one member's whole stream (the manifest maps member ids to files)
    policies/version-N.json  every policy version the program published, the document as published
    balances.json            each member's balance as the ledger answered it at the export
    liability.json           the liability at both bounds of the period and the journal's totals by kind
    journal.csv              the journal of the period (``ledger journal`` records)

This module imports nothing that needs a store: ``ledger verify-bundle`` runs with the installed wheel alone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.domain.journal import COLUMNS
from ledger.eventlog.chain import format_time
from ledger.eventlog.port import StoredEvent

FORMAT = "loyalty-ledger-audit-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PROGRAM = "program.jsonl"
BALANCES = "balances.json"
LIABILITY = "liability.json"
JOURNAL = "journal.csv"


def member_file(index: int) -> str:
    return f"members/{index:05d}.jsonl"


def policy_file(version: int) -> str:
    return f"policies/version-{version}.json"


def event_line(event: StoredEvent) -> str:
    """One stored event as a JSON line: the envelope, the payload as its exact text, the hashes in hex."""
    return json.dumps(
        {
            "stream_id": event.stream_id, "version": event.version, "position": event.position,
            "event_id": event.event_id, "type": event.type, "schema_version": event.schema_version,
            "occurred_at": format_time(event.occurred_at), "recorded_at": format_time(event.recorded_at),
            "policy_version": event.policy_version, "idempotency_key": event.idempotency_key,
            "correlation_id": event.correlation_id, "causation_id": event.causation_id, "actor": dict(event.actor),
            "payload": event.payload.decode("utf-8"), "prev_hash": event.prev_hash.hex(), "hash": event.hash.hex(),
        },
        ensure_ascii=False,
    )  # fmt: skip


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_event(line: str) -> StoredEvent:
    """The stored event of :func:`event_line` (ValueError, KeyError or TypeError if the line is not one)."""
    d = json.loads(line)
    return StoredEvent(
        event_id=d["event_id"], type=d["type"], schema_version=d["schema_version"], occurred_at=_time(d["occurred_at"]),
        recorded_at=_time(d["recorded_at"]), policy_version=d["policy_version"], idempotency_key=d["idempotency_key"],
        correlation_id=d["correlation_id"], causation_id=d["causation_id"], actor=dict(d["actor"]),
        payload=d["payload"].encode("utf-8"), stream_id=d["stream_id"], version=d["version"], position=d["position"],
        prev_hash=bytes.fromhex(d["prev_hash"]), hash=bytes.fromhex(d["hash"]),
    )  # fmt: skip


def events_text(events: Iterable[StoredEvent]) -> str:
    return "".join(event_line(e) + "\n" for e in events)


def journal_csv(records: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def document(value: object) -> str:
    """A JSON file's text: indented, keys in order, one final newline."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def listed_files(root: Path) -> list[str]:
    """Every file under ``root`` but the manifest and its signature, as relative POSIX paths, sorted."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, SIGNATURE)
    )
