"""Mapping a stored ledger event to the feed's integration event (``loyalty.v1.IntegrationEvent``) and subject.

Pure functions: no I/O, no clock. Three kinds of streams are mapped (anything else is skipped, see
:func:`to_message`):

- ``member-{program_id}-{member_id}``: a member event; subject ``{prefix}.{program_id}.member.{EventType}``.
- ``program-{program_id}``: a program event (ProgramCreated, PolicyPublished, ClockAdvanced) with an empty
  member id; subject ``{prefix}.{program_id}.program.{EventType}``. The policy ``document`` is left out (up to
  1 MiB, and integrators read policies through ProgramService); its SHA-256 is given as ``document_sha256``.
- ``signal-{program_id}``: a lifecycle signal (:mod:`ledger.feed.signals`); subject
  ``{prefix}.{program_id}.signal.{kind in lower snake case}``.

Personal data: ledger events carry pseudonymous ids only. The feed leaves out, in addition, the channel
identities (keyed hashes of card numbers and phone hashes: pseudonymous, but linkable tokens downstream systems
have no use for) and free text typed by staff (``note`` of PointsAdjusted, ``reason`` of MembershipCancelled,
TierOverrideSet, MemberErased and ExchangeCancelled), which could hold anything. A MemberErased goes out with its
``request_reference`` and ``identities_removed`` only: consumers drop what they keep of the member. :data:`LEFT_OUT` lists them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from google.protobuf.timestamp_pb2 import Timestamp

from ledger.domain.streams import parse_stream
from ledger.eventlog.chain import canonical_json
from ledger.eventlog.port import StoredEvent
from loyalty.v1 import feed_pb2

ENVELOPE_VERSION: Final = 1
"""``IntegrationEvent.envelope_version``."""

DEFAULT_SUBJECT_PREFIX: Final = "loyalty.v1"

CONTENT_TYPE: Final = "application/x-protobuf; messageType=loyalty.v1.IntegrationEvent"

LEFT_OUT: Final[Mapping[str, frozenset[str]]] = {
    "MemberEnrolled": frozenset({"identities"}),
    "MemberAbsorbed": frozenset({"identities"}),
    "PointsAdjusted": frozenset({"note"}),
    "MembershipCancelled": frozenset({"reason"}),
    "TierOverrideSet": frozenset({"reason"}),
    "MemberErased": frozenset({"reason"}),
    "ExchangeCancelled": frozenset({"reason"}),
    "MemberImported": frozenset({"identities"}),
    "ProgramCreated": frozenset({"document"}),
    "PolicyPublished": frozenset({"document"}),
}
"""Payload fields of each event type that the feed leaves out."""

_SIGNAL_KINDS: Final = {
    "POINTS_EXPIRING": feed_pb2.LIFECYCLE_SIGNAL_KIND_POINTS_EXPIRING,
    "TIER_REVIEW_AHEAD": feed_pb2.LIFECYCLE_SIGNAL_KIND_TIER_REVIEW_AHEAD,
    "INACTIVE_30_DAYS": feed_pb2.LIFECYCLE_SIGNAL_KIND_INACTIVE_30_DAYS,
    "INACTIVE_90_DAYS": feed_pb2.LIFECYCLE_SIGNAL_KIND_INACTIVE_90_DAYS,
}


@dataclass(frozen=True, slots=True)
class FeedMessage:
    """One message to publish: subject, body (IntegrationEvent bytes) and headers (``Nats-Msg-Id`` = id)."""

    subject: str
    data: bytes
    msg_id: str
    headers: Mapping[str, str]
    position: int


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def feed_payload(event_type: str, payload: bytes) -> dict[str, Any]:
    """The stored payload as the feed gives it: :data:`LEFT_OUT` fields removed (documents as their hash)."""
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError(f"the payload of a {event_type} is not a JSON object")
    for name in LEFT_OUT.get(event_type, ()):
        value = body.pop(name, None)
        if name == "document" and isinstance(value, str):
            body["document_sha256"] = hashlib.sha256(value.encode()).hexdigest()
    return body


def _signal(body: Mapping[str, Any]) -> feed_pb2.LifecycleSignal:
    signal = feed_pb2.LifecycleSignal(
        kind=_SIGNAL_KINDS.get(str(body.get("kind")), feed_pb2.LIFECYCLE_SIGNAL_KIND_UNSPECIFIED),
        signal_id=str(body.get("signal_id") or ""),
        member_id=str(body.get("member_id") or ""),
        points=int(body.get("points") or 0),
        tier=str(body.get("tier") or ""),
        inactive_days=int(body.get("inactive_days") or 0),
    )
    for name in ("reference_at", "expires_at", "next_review_at", "last_activity_at"):
        at = _parse_time(body.get(name))
        if at is not None:
            getattr(signal, name).FromDatetime(at)
    return signal


def to_integration_event(stored: StoredEvent) -> feed_pb2.IntegrationEvent | None:
    """The integration event of ``stored``; None for a stream the feed does not carry."""
    parsed = parse_stream(stored.stream_id)
    if parsed is None:
        return None
    kind, program_id, member_id = parsed
    body = feed_payload(stored.type, stored.payload)
    message = feed_pb2.IntegrationEvent(
        event_id=stored.event_id,
        envelope_version=ENVELOPE_VERSION,
        program_id=program_id,
        member_id=member_id,
        stream_id=stored.stream_id,
        stream_version=stored.version,
        position=stored.position,
        event_type=stored.type,
        payload_version=stored.schema_version,
        occurred_at=_timestamp(stored.occurred_at),
        recorded_at=_timestamp(stored.recorded_at),
        policy_version=stored.policy_version or 0,
        correlation_id=stored.correlation_id or "",
        payload_json=canonical_json(body).decode(),
    )
    if kind == "member":
        message.kind = feed_pb2.INTEGRATION_EVENT_KIND_MEMBER_EVENT
    elif kind == "program":
        message.kind = feed_pb2.INTEGRATION_EVENT_KIND_PROGRAM_EVENT
    else:
        message.kind = feed_pb2.INTEGRATION_EVENT_KIND_LIFECYCLE_SIGNAL
        message.signal.CopyFrom(_signal(body))
        message.member_id = message.signal.member_id
    return message


def subject_of(message: feed_pb2.IntegrationEvent, prefix: str = DEFAULT_SUBJECT_PREFIX) -> str:
    """The NATS subject of an integration event (see the module docstring)."""
    if message.kind == feed_pb2.INTEGRATION_EVENT_KIND_LIFECYCLE_SIGNAL:
        name = feed_pb2.LifecycleSignalKind.Name(message.signal.kind)
        tail = "signal." + name.removeprefix("LIFECYCLE_SIGNAL_KIND_").lower()
    elif message.kind == feed_pb2.INTEGRATION_EVENT_KIND_PROGRAM_EVENT:
        tail = "program." + _token(message.event_type)
    else:
        tail = "member." + _token(message.event_type)
    return f"{prefix}.{_token(message.program_id)}.{tail}"


def _token(value: str) -> str:
    if not value or any(c in value for c in ".*> \t\r\n"):
        raise ValueError(f"{value!r} cannot be a NATS subject token")
    return value


def to_message(stored: StoredEvent, prefix: str = DEFAULT_SUBJECT_PREFIX) -> FeedMessage | None:
    """The message to publish for ``stored``; None for a stream the feed does not carry (it is skipped)."""
    message = to_integration_event(stored)
    if message is None:
        return None
    headers = {
        "Nats-Msg-Id": stored.event_id,
        "Content-Type": CONTENT_TYPE,
        "Loyalty-Envelope-Version": str(ENVELOPE_VERSION),
        "Loyalty-Event-Type": stored.type,
        "Loyalty-Position": str(stored.position),
    }
    return FeedMessage(
        subject=subject_of(message, prefix),
        data=message.SerializeToString(deterministic=True),
        msg_id=stored.event_id,
        headers=headers,
        position=stored.position,
    )
