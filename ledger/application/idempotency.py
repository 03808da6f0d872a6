"""The write path's one idempotency fingerprint: what makes two requests with one key "the same request".

Every write with an idempotency key, a member's command or a program's (create, publish a policy, move a test
clock), records ``fingerprint(request)`` with its answer; a retry with the key is answered with the first
answer if its fingerprint matches (:func:`same_request`), and refused (:class:`~ledger.domain.errors.Conflict`)
if not. The fingerprint is the SHA-256 of the command's ``repr`` and its business time: commands are frozen
dataclasses of strings, ints, datetimes and tuples of such, so their ``repr`` is a complete and deterministic
description, and who sent the request is not part of it.

Records written before stay valid: a member command field added after release is left out while it has its
default (:data:`ADDED_FIELDS`), and a program write recorded with the JSON text the program writes once used
(:func:`legacy_program_fingerprint`) still matches its retry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime
from typing import Any, ClassVar, Protocol

from ledger.domain.commands import Envelope


class ProgramRequest(Protocol):
    """A program write's command (:mod:`ledger.application.program_writes`): a frozen dataclass with an ``op``."""

    op: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]


#: Command fields added after the 0.1.0 release, with their defaults: ``fingerprint`` leaves them out at those.
ADDED_FIELDS: dict[str, tuple[tuple[str, object], ...]] = {"RecordPurchase": (("hold_id", ""),)}


def fingerprint(request: Envelope | ProgramRequest) -> str:
    """The request's fingerprint: a member command in its envelope (with its business time), or a program
    write's command (which has none)."""
    if isinstance(request, Envelope):
        command: object = request.command
        occurred_at: datetime | None = request.occurred_at
    else:
        command, occurred_at = request, None
    occurred = occurred_at.isoformat() if occurred_at else ""
    added = ADDED_FIELDS.get(type(command).__name__, ())
    if added and all(getattr(command, name) == default for name, default in added):
        text = replace_fields(command, added)
    else:
        text = repr(command)
    return hashlib.sha256(f"{text}|{occurred}".encode()).hexdigest()


def same_request(recorded: str, request: Envelope | ProgramRequest) -> bool:
    """Whether a key's recorded fingerprint is ``request``'s: as :func:`fingerprint` computes it now, or, for a
    program write, as it was recorded before the write path had one fingerprint."""
    if recorded == fingerprint(request):
        return True
    return not isinstance(request, Envelope) and recorded == legacy_program_fingerprint(request)


def legacy_program_fingerprint(request: ProgramRequest) -> str:
    """A program write's fingerprint as recorded before: the JSON of its operation and fields."""
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    return json.dumps({"op": request.op, **fields}, sort_keys=True, default=str)


def replace_fields(command: object, added: tuple[tuple[str, object], ...]) -> str:
    """The command's ``repr`` without the ``added`` fields (as the command class printed before they existed)."""
    text = repr(command)
    for name, default in reversed(added):  # added fields come last, in the order they were added
        tail = f", {name}={default!r})"
        if text.endswith(tail):
            text = text[: -len(tail)] + ")"
    return text
