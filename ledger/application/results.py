"""What a write returns, and how it is kept so that a retry returns the first answer (the fingerprint a retry
is matched by is :mod:`ledger.application.idempotency`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
