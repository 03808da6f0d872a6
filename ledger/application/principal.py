"""The principal a call runs as: set by the entrypoint that authenticated it, read where events are written."""

from __future__ import annotations

from contextvars import ContextVar

from ledger.application.keys import Principal

CURRENT: ContextVar[Principal | None] = ContextVar("ledger_principal", default=None)
"""The authenticated caller of the current call (None: the ledger itself, or a server without authentication)."""


def actor_fields() -> dict[str, str]:
    """What the current principal adds to an event's actor: the key id and role (nothing without one)."""
    principal = CURRENT.get()
    if principal is None:
        return {}
    return {"key_id": principal.key_id, "role": principal.role}
