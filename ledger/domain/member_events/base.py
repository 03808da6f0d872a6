"""The base of every member event and the small values many of them carry: business-time instants, lots and
the points taken from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict

_CANONICAL_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)"
)


def _parse_utc(value: Any) -> Any:
    """A datetime in the canonical UTC form, parsed to a ``datetime`` whose zone is ``datetime.UTC``.

    pydantic would parse it to the same instant with a zone of its own class; comparing or subtracting datetimes
    whose zones are different objects calls ``utcoffset`` on every operation, and the state mixes datetimes read
    from the log with those decided now (``UTC``). ``fromisoformat`` gives the same value for this form (and is
    faster); anything else, or anything it refuses, is left to pydantic as before.
    """
    if type(value) is str and _CANONICAL_UTC.fullmatch(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is UTC:
            return parsed
    return value


Instant = Annotated[datetime, BeforeValidator(_parse_utc)]
"""A datetime field of an event (see ``_parse_utc``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LotDebit(_Model):
    """Points taken from (or reserved on) one lot."""

    lot_id: str
    points: int


class NewLot(_Model):
    """A lot created by the event that carries it."""

    lot_id: str
    source: Literal["purchase", "behaviour", "adjustment", "refund_return", "merge", "imported", "transfer"]
    points: int
    active_at: Instant
    expires_at: Instant
    order_id: str | None = None


class _Event(_Model):
    at: Instant
