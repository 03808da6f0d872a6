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


class Refusal(DomainError):
    """A business rule refuses the command; ``reason`` is a stable code such as ``INSUFFICIENT_POINTS``."""

    def __init__(self, reason: str, message: str, metadata: Mapping[str, object] | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}


class Conflict(DomainError):
    """The idempotency key was used before with a different request (``ALREADY_EXISTS``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
