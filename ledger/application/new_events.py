"""How the write path records a decided event for the log: one id scheme for every new event, and who caused it.

Every event the ledger appends, a member's, a reward's stock or a program's, gets a random UUID as its id
(:func:`new_event_id`). Ids are opaque strings to everything that reads the log (the hash chain covers them as
they are), so the ids of events stored before, such as ``{program}:{n}`` for a program's, stay as they are.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ledger.domain import commands as cmd
from ledger.eventlog.port import NewEvent

SCHEMA_VERSION = 1

SYSTEM_ACTOR: dict[str, Any] = {"channel": "system"}
"""Who caused time-driven work (activations, expiries, reviews, grants): the ledger itself."""


def new_event_id() -> str:
    """The id of a new event: a random UUID, never reused."""
    return str(uuid.uuid4())


def new_event(
    type: str,
    payload: bytes,
    occurred_at: datetime,
    recorded_at: datetime,
    *,
    actor: dict[str, Any],
    idempotency_key: str = "",
    correlation_id: str | None = None,
    policy_version: int | None = None,
) -> NewEvent:
    """A decided event as it is appended (``idempotency_key``: the request's that caused it, "" for none)."""
    return NewEvent(
        event_id=new_event_id(),
        type=type,
        schema_version=SCHEMA_VERSION,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        policy_version=policy_version,
        idempotency_key=idempotency_key or None,
        correlation_id=correlation_id,
        causation_id=None,
        actor=actor,
        payload=payload,
    )


def caused_by(req: cmd.Envelope) -> dict[str, Any]:
    """The ``new_event`` arguments naming the request that caused an event: its key, correlation id, actor."""
    return {
        "actor": req.actor.as_dict(),
        "idempotency_key": req.idempotency_key,
        "correlation_id": req.correlation_id,
    }
