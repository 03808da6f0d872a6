"""Why the ledger refuses a command.

Three kinds of refusal, each mapped to one gRPC status at the edge:

* :class:`InvalidCommand` -- the caller sent something malformed (``INVALID_ARGUMENT``, naming the field);
* :class:`NotFound` -- an unknown program, member, order, hold or entitlement (``NOT_FOUND``);
* :class:`Refusal` -- a well-formed command that the business rules refuse (``FAILED_PRECONDITION`` with a
  stable reason code and the numbers a cashier needs to explain it).

A refused command writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime


class DomainError(Exception):
    """Base of every refusal raised by the domain."""


class InvalidCommand(DomainError):
    """A field of the command is missing or malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(DomainError):
    """The command names something the ledger does not know."""

    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier


def metadata_value(value: object) -> str:
    """A refusal's metadata value as the API sends it: times in RFC 3339 (UTC, ``Z``), the rest as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


class Refusal(DomainError):
    """A business rule refuses the command.

    ``reason`` is the stable public code (``INSUFFICIENT_POINTS``, ...) and ``metadata`` uses the public keys,
    both exactly as ``docs/errors.md`` lists them: the API passes them through unchanged.
    """

    def __init__(self, reason: str, message: str, metadata: Mapping[str, object] | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = {k: metadata_value(v) for k, v in (metadata or {}).items()}


class Conflict(DomainError):
    """The idempotency key was used before with a different request (``ALREADY_EXISTS``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
