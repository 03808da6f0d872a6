"""Checking an evidence bundle with nothing but the bundle: no server, no store (``ledger verify-bundle``).

In order, stopping at the first kind of finding: the signature of the manifest (when a public key is given),
the digest and size of every file against the manifest (and no file the manifest does not list), every link of
every hash chain with the same :func:`ledger.eventlog.chain.verify_stream` as ``ledger verify`` (the first broken
link is named with its member and version), the policy documents against the program stream, each member's
balance folded again from its events against ``balances.json``, and the journal and the liability recomputed
from the events against ``journal.csv`` and ``liability.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ledger.domain import events as ev
from ledger.domain import program as prog
from ledger.domain.as_of import Recorded, fold_as_of
from ledger.domain.journal import MemberLog, program_journal, records
from ledger.eventlog.chain import verify_stream
from ledger.eventlog.port import StoredEvent
from ledger.evidence import layout
from ledger.evidence.figures import balance, liability_document


@dataclass(slots=True)
class Findings:
    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class _Stop(Exception):
    pass


def _read_events(root: Path, name: str, findings: Findings, who: str) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    for number, line in enumerate((root / name).read_text(encoding="utf-8").splitlines(), start=1):
        try:
            out.append(layout.read_event(line))
        except (ValueError, KeyError, TypeError) as exc:
            findings.failures.append(f"{who}: line {number} of {name} is not a stored event ({exc})")
            raise _Stop from None
    return out


def _check_files(root: Path, manifest: dict[str, Any], findings: Findings) -> None:
    files: dict[str, Any] = manifest["files"]
    for name in sorted(set(layout.listed_files(root)) - set(files)):
        findings.failures.append(f"file {name} is not listed in the manifest")
    for name, entry in sorted(files.items()):
        path = root / name
        if not path.is_file():
            findings.failures.append(f"file {name} listed in the manifest is missing")
        elif path.stat().st_size != entry["bytes"] or layout.sha256(path) != entry["sha256"]:
            findings.failures.append(f"file {name}: SHA-256 differs from the manifest's")
    if findings.failures:
        raise _Stop
    findings.checked.append(f"{len(files)} file digests match the manifest")


def _check_chain(
    events: list[StoredEvent], who: str, head: str | None, count: int | None, findings: Findings
) -> None:
    found = verify_stream(events, head_version=count, head_hash=bytes.fromhex(head) if head else None)
    if found is not None:
        at = f"position {found.position}" if found.position is not None else "after the last event"
        findings.failures.append(f"chain broken: {who} version {found.version} ({at}): {found.reason}")
        raise _Stop


def _policies(root: Path, program_events: list[StoredEvent], findings: Findings) -> prog.ProgramState:
    state = prog.ProgramState(program_id="")
    for stored in program_events:
        event = prog.decode(stored.payload)
        prog.evolve_program(state, event)
        if isinstance(event, prog.ProgramCreated | prog.PolicyPublished):
            version = event.version if isinstance(event, prog.PolicyPublished) else 1
            path = root / layout.policy_file(version)
            if (
                not path.is_file()
                or json.loads(path.read_text(encoding="utf-8"))["document"] != event.document
            ):
                findings.failures.append(
                    f"{layout.policy_file(version)} is not the document the program published"
                )
    if findings.failures:
        raise _Stop
    findings.checked.append(f"{len(state.policies.versions)} policy versions match the program stream")
    return state


def _compare(name: str, recorded: object, recomputed: object, findings: Findings) -> None:
    if recorded != recomputed:
        findings.failures.append(f"{name} differs from what the events give")


def check_bundle(root: Path, signature_check: Callable[[bytes, Path], str | None] | None = None) -> Findings:
    """Every check of the module's docstring; ``signature_check(manifest_bytes, root)`` returns a finding or None."""
    findings = Findings()
    try:
        manifest_bytes = (root / layout.MANIFEST).read_bytes()
    except OSError as exc:
        findings.failures.append(f"no manifest: {exc}")
        return findings
    try:
        if signature_check is not None:
            problem = signature_check(manifest_bytes, root)
            if problem:
                findings.failures.append(problem)
                raise _Stop
            findings.checked.append("the manifest's signature is valid")
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != layout.FORMAT or manifest.get("format_version") != layout.FORMAT_VERSION:
            findings.failures.append("not an evidence bundle of a format this ledger reads")
            raise _Stop
        _check_files(root, manifest, findings)
        _recompute(root, manifest, findings)
    except _Stop:
        pass
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:  # a file altered into nonsense
        findings.failures.append(f"the bundle cannot be read: {type(exc).__name__}: {exc}")
    return findings


def _recompute(root: Path, manifest: dict[str, Any], findings: Findings) -> None:
    program_id = manifest["program_id"]
    program_events = _read_events(root, layout.PROGRAM, findings, f"program {program_id}")
    _check_chain(program_events, f"program {program_id}", None, None, findings)
    logs: list[MemberLog] = []
    for m in manifest["members"]:
        who = f"member {m['member_id']}"
        stored = _read_events(root, m["file"], findings, who)
        _check_chain(stored, who, m["head_hash"], m["events"], findings)
        try:
            recorded = [
                Recorded(s.event_id, s.occurred_at, s.recorded_at, ev.decode(s.payload)) for s in stored
            ]
        except ValueError as exc:
            findings.failures.append(f"{who}: an event cannot be read ({exc})")
            raise _Stop from None
        logs.append(
            MemberLog(m["member_id"], recorded, {s.event_id: (s.version, s.position) for s in stored})
        )
    findings.checked.append(f"hash chains intact: the program and {len(logs)} members")
    policies = _policies(root, program_events, findings).policies
    known_at = datetime.fromisoformat(manifest["as_known_at"])
    balances = json.loads((root / layout.BALANCES).read_text(encoding="utf-8"))
    for log in logs:
        state = fold_as_of(program_id, log.member_id, log.recorded, known_at, known_at, policies).state
        _compare(f"balance of member {log.member_id}", balances.get(log.member_id), balance(state), findings)
    if findings.failures:
        raise _Stop
    findings.checked.append(f"{len(logs)} balances folded again from the events match balances.json")
    tz = ZoneInfo(manifest["time_zone"])
    start, end = datetime.fromisoformat(manifest["from"]), datetime.fromisoformat(manifest["to"])
    journal = program_journal(
        program_id, logs, policies, start, end, known_at, manifest["point_value_fen"], tz
    )
    _compare("journal.csv", (root / layout.JOURNAL).read_text(encoding="utf-8"),
             layout.journal_csv(records(journal, tz)), findings)  # fmt: skip
    liability = json.loads((root / layout.LIABILITY).read_text(encoding="utf-8"))
    _compare("liability.json", liability, liability_document(journal), findings)
    counts = {
        "members": len(logs), "member_events": sum(len(log.recorded) for log in logs),
        "program_events": len(program_events), "policy_versions": len(policies.versions),
        "journal_lines": len(journal.lines),
    }  # fmt: skip
    _compare("the manifest's counts", manifest["counts"], counts, findings)
    if findings.failures:
        raise _Stop
    findings.checked.append(
        f"journal ({len(journal.lines)} lines), liability and counts recomputed from the events match"
    )
