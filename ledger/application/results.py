"""What a write returns, and how it is kept so that a retry returns the first answer."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.domain.commands import Envelope
from ledger.domain.events import MemberEvent, decode, encode
from ledger.domain.state import Balances, MemberState


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The events a command wrote (time-driven events before it are not included) and the balance after."""

    program_id: str
    member_id: str
    events: tuple[MemberEvent, ...]
    version: int
    balance: Balances
    recorded_at: datetime
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    state_after: MemberState | None = field(default=None, compare=False, repr=False)
    """A private copy of the member's state right after the command, when the caller asked for it (the answer is
    then built from the write itself, with no second trip to the writer). Never kept: a replayed result has None."""

    def to_bytes(self, encoded: Sequence[bytes] | None = None) -> bytes:
        """The result as kept with its idempotency key. ``encoded``: the events' payloads if the caller already
        has them (``encode`` of each event, in order), so they are not encoded a second time."""
        if encoded is None:
            payloads = [encode(e).decode() for e in self.events]
        else:
            if len(encoded) != len(self.events):
                raise ValueError("one encoded payload per event")
            payloads = [p.decode() for p in encoded]
        return json.dumps(
            {
                "program_id": self.program_id,
                "member_id": self.member_id,
                "events": payloads,
                "version": self.version,
                "balance": {
                    "active": self.balance.active,
                    "pending": self.balance.pending,
                    "held": self.balance.held,
                    "arrears": self.balance.arrears,
                },
                "recorded_at": self.recorded_at.isoformat(),
                "extra": self.extra,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CommandResult:
        raw = json.loads(data)
        return cls(
            program_id=raw["program_id"],
            member_id=raw["member_id"],
            events=tuple(decode(e.encode()) for e in raw["events"]),
            version=raw["version"],
            balance=Balances(**raw["balance"]),
            recorded_at=datetime.fromisoformat(raw["recorded_at"]),
            replayed=True,
            extra=raw["extra"],
        )


def fingerprint(envelope: Envelope) -> str:
    """What makes two requests "the same request": the command and its business time (not who sent it).

    Commands are frozen dataclasses of strings, ints, datetimes and tuples of such, so their ``repr`` is a
    complete and deterministic description. A field added to a command after release is left out while it has
    its default (:data:`ADDED_FIELDS`), so a retry of a request recorded by an earlier version still matches.
    """
    occurred = envelope.occurred_at.isoformat() if envelope.occurred_at else ""
    command = envelope.command
    added = ADDED_FIELDS.get(type(command).__name__, ())
    if added and all(getattr(command, name) == default for name, default in added):
        text = replace_fields(command, added)
    else:
        text = repr(command)
    return hashlib.sha256(f"{text}|{occurred}".encode()).hexdigest()


#: Command fields added after the 0.1.0 release, with their defaults: ``fingerprint`` leaves them out at those.
ADDED_FIELDS: dict[str, tuple[tuple[str, object], ...]] = {"RecordPurchase": (("hold_id", ""),)}


def replace_fields(command: object, added: tuple[tuple[str, object], ...]) -> str:
    """The command's ``repr`` without the ``added`` fields (as the command class printed before they existed)."""
    text = repr(command)
    for name, default in reversed(added):  # added fields come last, in the order they were added
        tail = f", {name}={default!r})"
        if text.endswith(tail):
            text = text[: -len(tail)] + ")"
    return text
