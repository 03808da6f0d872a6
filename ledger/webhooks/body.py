"""What a webhook delivery carries: the feed's integration event as JSON, and the headers that go with it."""

from __future__ import annotations

import json
from typing import Final

from google.protobuf import json_format

from ledger.eventlog.port import StoredEvent
from ledger.feed.integration import ENVELOPE_VERSION, to_integration_event
from ledger.webhooks.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_header
from loyalty.v1 import feed_pb2

CONTENT_TYPE: Final = "application/json"
USER_AGENT: Final = "loyalty-ledger-webhooks/1"


def event_of(stored: StoredEvent) -> feed_pb2.IntegrationEvent | None:
    """The integration event the feed publishes for ``stored`` (None: a stream the feed does not carry)."""
    return to_integration_event(stored)


def json_body(event: feed_pb2.IntegrationEvent) -> bytes:
    """The protobuf JSON mapping of ``event`` (field names as in ``feed.proto``, every field present, 64-bit
    integers as strings), with sorted keys and no spaces, UTF-8."""
    document = json_format.MessageToDict(
        event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def headers(
    event: feed_pb2.IntegrationEvent,
    body: bytes,
    *,
    secrets: tuple[str, ...],
    timestamp: int,
    subscription_id: str,
    attempt: int,
) -> dict[str, str]:
    """The headers of one attempt: the event id (for deduplication), the timestamp and the signature over both
    (one ``v1=`` value per secret, the current one first, while a rotation overlaps)."""
    return {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        ID_HEADER: event.event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: ",".join(signature_header(secret, timestamp, body) for secret in secrets),
        "Ledger-Webhook-Subscription": subscription_id,
        "Ledger-Webhook-Event-Type": event.event_type,
        "Ledger-Webhook-Position": str(event.position),
        "Ledger-Webhook-Attempt": str(attempt),
        "Loyalty-Envelope-Version": str(ENVELOPE_VERSION),
    }
