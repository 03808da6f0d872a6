"""The identity pepper must never change for a store: its fingerprint is kept in the log and checked at start.

Identity digests (card numbers, phones) are HMACs under the pepper; served with another pepper, a store's
identities would silently stop resolving. The first ``ledger serve`` on a store appends one event to the
``identity-pepper`` stream with the pepper's fingerprint, an HMAC of a fixed label under it (never the pepper,
nor anything it could be read back from); every later start compares and refuses a different pepper.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from ledger.domain.streams import PEPPER_STREAM
from ledger.eventlog.port import AppendBatch, EventStore, NewEvent, StreamAppend, WrongExpectedVersion

LABEL = b"loyalty-ledger identity pepper fingerprint v1"
EVENT_TYPE = "IdentityPepperFingerprinted"


class PepperChanged(Exception):
    """The store was first served with another identity pepper."""


def fingerprint(pepper: bytes) -> str:
    return hmac.new(pepper, LABEL, hashlib.sha256).hexdigest()


def recorded_fingerprint(store: EventStore[Any]) -> str | None:
    events = store.read_stream(PEPPER_STREAM, limit=1)
    return str(json.loads(events[0].payload)["fingerprint"]) if events else None


def check_pepper(store: EventStore[Any], pepper: bytes, now: datetime) -> bool:
    """Record the pepper's fingerprint on a store that has none (True), or check it against the recorded one
    (False); :class:`PepperChanged` when they differ."""
    mine = fingerprint(pepper)
    for _ in range(3):
        recorded = recorded_fingerprint(store)
        if recorded is not None:
            if not hmac.compare_digest(recorded, mine):
                raise PepperChanged(
                    "this store was first served with another identity pepper: with this one its identities "
                    "(card numbers, phones) would stop resolving. Start it with the pepper it was created with"
                )
            return False
        payload = json.dumps({"fingerprint": mine, "type": EVENT_TYPE}, sort_keys=True, separators=(",", ":"))
        event = NewEvent(
            event_id="identity-pepper:1", type=EVENT_TYPE, schema_version=1, occurred_at=now, recorded_at=now,
            policy_version=None, idempotency_key=None, correlation_id=None, causation_id=None,
            actor={"channel": "operator_console"}, payload=payload.encode(),
        )  # fmt: skip
        try:
            store.append(AppendBatch([StreamAppend(PEPPER_STREAM, 0, [event])]))
            return True
        except WrongExpectedVersion:
            continue  # another replica recorded it meanwhile: compare with that
    raise PepperChanged("the identity-pepper stream kept changing")
